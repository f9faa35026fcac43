"""Intervals and verdicts: constructed cases where the answer is known, and the verdict never
disagreeing with the interval or the test printed beside it."""
import numpy as np
import pytest

import dirackit as dk
from dirackit.stats import (CONTRADICTED, NOISE, SHOWN, accuracy_interval, compare_paired, compare_unpaired,
                            pack_correct, unpack_correct)


def test_accuracy_interval_is_wilson_and_stays_inside_0_1():
    low, high = accuracy_interval(500, 1000)
    assert low == pytest.approx(0.4691, abs=1e-4) and high == pytest.approx(0.5309, abs=1e-4)
    assert accuracy_interval(0, 10)[0] == 0 and 0 < accuracy_interval(0, 10)[1] < 0.35
    assert accuracy_interval(10, 10)[1] == pytest.approx(1) and accuracy_interval(10, 10)[0] > 0.65
    big, small = accuracy_interval(9000, 10000), accuracy_interval(90, 100)
    assert big[1] - big[0] < (small[1] - small[0]) / 5  # 100x the images: about a tenth of the width
    with pytest.raises(ValueError, match="correct <= total"):
        accuracy_interval(11, 10)


def paired(n: int, both: int, a_only: int, b_only: int):
    """Per-image results with the given counts of images right for both, only a, only b."""
    a = np.zeros(n, bool)
    b = np.zeros(n, bool)
    a[:both + a_only] = True
    b[:both] = True
    b[both + a_only:both + a_only + b_only] = True
    return a, b


@pytest.mark.parametrize("a_only, b_only, verdict", [(120, 40, SHOWN), (52, 48, NOISE), (30, 95, CONTRADICTED)])
def test_paired_verdicts_on_constructed_cases(a_only, b_only, verdict):
    a, b = paired(1000, 500, a_only, b_only)
    c = compare_paired(a, b, "dirac", "plain")
    assert c.verdict == verdict and (c.a_only, c.b_only) == (a_only, b_only)
    assert c.difference == pytest.approx((a_only - b_only) / 1000)
    assert c.low <= c.difference <= c.high
    assert verdict in str(c) and "dirac vs plain" in str(c) and "1,000 test images" in str(c)


def test_only_disagreements_count():
    # the same 2-point difference: decisive when the networks disagree on few images, noise on many
    few = compare_paired(*paired(1000, 600, 25, 5))
    many = compare_paired(*paired(1000, 300, 160, 140))
    assert few.difference == many.difference == pytest.approx(0.02)
    assert few.verdict == SHOWN and many.verdict == NOISE


def test_verdict_agrees_with_the_exact_mcnemar_test_everywhere():
    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(20, 400))
        a_only, b_only = (int(v) for v in rng.integers(0, n // 3, 2))
        c = compare_paired(*paired(n, n // 3, a_only, b_only))
        rejects = c.p_value <= 0.05
        assert (c.verdict != NOISE) == rejects, (a_only, b_only, c)
        assert c.verdict == NOISE or (c.verdict == SHOWN) == (c.difference > 0)


def test_identical_networks_are_noise():
    a, _ = paired(100, 50, 0, 0)
    c = compare_paired(a, a)
    assert (c.low, c.high, c.p_value, c.verdict) == (0, 0, 1, NOISE)


def test_paired_inputs_must_match():
    with pytest.raises(ValueError, match="same test images"):
        compare_paired([True, False], [True])


def test_unpaired_comparison():
    assert compare_unpaired(0.60, 10000, 0.55, 10000).verdict == SHOWN
    assert compare_unpaired(0.52, 1000, 0.50, 1000).verdict == NOISE  # 2 points over 1,000 images each
    c = compare_unpaired(0.40, 1000, 0.50, 1000, "a", "b")
    assert c.verdict == CONTRADICTED and not c.paired and "unpaired" in str(c)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1000])
def test_pack_round_trip(n):
    bits = np.random.default_rng(n).random(n) < 0.5
    assert (unpack_correct(pack_correct(bits), n) == bits).all()
    with pytest.raises(ValueError, match="bits"):
        unpack_correct(pack_correct(bits), n + 8)


def test_runs_record_per_image_results_and_compare_paired(tmp_path, tiny_data):
    recipe = dk.recipes.FAST.replace(epochs=2, batch_size=16, lr=0.05)
    for name in ("wrn-10-1", "plain-10-1"):
        dk.fit(dk.build_model(name, num_classes=4), tiny_data, recipe, out=tmp_path / name, progress=False,
               device="cpu")
    run = dk.RunLog.read(tmp_path / "wrn-10-1")
    correct, test_set = run.test_correct()
    assert len(correct) == len(tiny_data.test_labels) and correct.mean() == pytest.approx(run.last["test_acc"])
    c = dk.compare.compare_runs(tmp_path / "wrn-10-1", tmp_path / "plain-10-1")
    assert c.paired and c.a == "wrn-10-1" and c.acc_b == dk.RunLog.read(tmp_path / "plain-10-1").last["test_acc"]
    (tmp_path / "plain-10-1" / "test_correct.json").unlink()  # an older run without per-image results
    assert not dk.compare.compare_runs(tmp_path / "wrn-10-1", tmp_path / "plain-10-1").paired
