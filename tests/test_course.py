"""The notebooks' shared helpers: test batch, results.json, exercise checks."""
import json

import numpy as np
import pytest
import torch

import dirackit as dk
from dirackit import course


def test_test_batch_is_the_first_test_images_normalised(make_data):
    data = make_data()
    x = course.test_batch(data, size=3)
    mean, std = torch.tensor(data.mean)[:, None, None], torch.tensor(data.std)[:, None, None]
    expected = (data.test_images[:3].permute(0, 3, 1, 2).float() / 255 - mean) / std
    torch.testing.assert_close(x, expected)
    assert len(course.test_batch(data, size=10_000)) == len(data.test_labels)


def test_save_results_writes_plain_json_and_returns_the_results(tmp_path):
    results = {"runs": np.int64(3), "acc": np.float32(0.5), "per_model": {"a": torch.tensor(1.5)}}
    assert course.save_results(tmp_path / "new", results) is results
    assert json.loads((tmp_path / "new" / "results.json").read_text()) == {"runs": 3, "acc": 0.5,
                                                                         "per_model": {"a": 1.5}}
    with pytest.raises(TypeError, match="set is not JSON serialisable"):
        course.save_results(tmp_path, {"bad": {1, 2}})


def test_check_answer_says_right_or_not_without_the_answer(capsys):
    assert dk.course.check_answer(100, 101, rel=0.02) and not course.check_answer(90, 101, rel=0.02)
    assert not course.check_answer(None, 3) and course.check_answer("wide", "wide")
    assert not course.check_answer(True, 1)
    out = capsys.readouterr().out
    assert "101" not in out and "Not answered yet" in out


def test_a_wrong_answer_gets_the_hint_and_the_solution_only_when_asked(capsys):
    kw = {"hint": "count the blocks in each stage", "solution": "3 stages of 2 blocks: 6"}
    assert not course.check_answer(5, 6, **kw)
    out = capsys.readouterr().out
    assert "Hint: count the blocks in each stage" in out and "show_solution=True" in out
    assert "3 stages" not in out and "6" not in out  # neither the solution nor the expected value

    assert course.check_answer(6, 6, **kw)
    out = capsys.readouterr().out
    assert out.startswith("Right.") and "Hint" not in out and "3 stages" not in out

    assert not course.check_answer(None, 6, **kw, show_solution=True)  # asked before answering
    out = capsys.readouterr().out
    assert "Not answered yet" in out and "Solution: 3 stages of 2 blocks: 6" in out
    assert course.check_answer(6, 6, **kw, show_solution=True)
    assert "Solution: 3 stages" in capsys.readouterr().out


def test_a_check_without_a_hint_still_says_what_to_do(capsys):
    assert not course.check_answer("thin", "wide")
    out = capsys.readouterr().out
    assert "Hint: check your reasoning" in out and "show_solution" not in out  # no solution to offer
