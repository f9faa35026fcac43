"""The reference-run plan: trained in order across time-limited calls, exported small, tabled beside the papers."""
import json
from dataclasses import replace

import pytest
import torch

import dirackit as dk
from dirackit import reference
from dirackit.reference import CPU_PLAN, PAIRS, PLAN, PLANS, Pair, Reference, export, pair_table, run_plan, table
from dirackit.compare import compare_runs
from dirackit.registry import model_card
from dirackit.runlog import TIMING_COLUMNS
from dirackit.stats import CONTRADICTED, SHOWN

TINY = dk.recipes.WRN.replace(epochs=2, batch_size=16, lr=0.05, milestones=(1,))


@pytest.fixture
def tiny_plan(monkeypatch):
    """Two wrn-10-1 runs whose recipe is small enough for synthetic data."""
    monkeypatch.setattr(reference, "get_recipe", lambda name: TINY)
    return (Reference("first", "wrn-10-1", "wrn", seed=3, paper_error=5.0, paper_source="a paper"),
            Reference("second", "wrn-10-1", "wrn", seed=4))


def test_plan_entries_name_real_models_and_recipes_once_each():
    assert len({r.name for r in PLAN}) == len(PLAN)
    for ref in PLAN:
        model_card(ref.model)  # raises for an unknown name
        assert ref.planned_epochs == dk.recipes.get_recipe(ref.recipe).epochs
        assert (ref.paper_error is None) == (not ref.paper_source)


def test_cpu_plan_scales_each_papers_recipe_and_its_pairs_name_its_entries():
    names = {r.name for r in CPU_PLAN}
    assert len(names) == len(CPU_PLAN)
    for ref in CPU_PLAN:
        recipe = ref.recipe_used()
        paper = dk.recipes.get_recipe(ref.recipe)
        assert recipe.epochs == ref.planned_epochs == 6 and recipe.seed == ref.seed
        same = lambda r: {k: v for k, v in r.asdict().items() if k not in ("epochs", "milestones", "seed")}
        assert same(recipe) == same(paper)  # only the length (and with it the milestones) changed
        assert recipe.milestones == dk.recipes.scale_milestones(paper.milestones, paper.epochs, 6)
        assert ref.recipe == model_card(ref.model).recipe  # each network with its own paper's recipe
        assert ref.if_noise is None or set(ref.if_noise) <= names
    for plan, pairs in PAIRS.items():
        entries = {r.name for r in PLANS[plan]}
        for pair in pairs:
            assert {pair.a, pair.b, *(n for seed in pair.seeds for n in seed)} <= entries and pair.paper


def test_a_second_seed_trains_only_when_the_first_pair_is_within_noise(tmp_path, tiny_data, tiny_plan):
    runs = tmp_path / "runs"
    twin = Reference("twin", "wrn-10-1", "wrn", seed=3)  # the same run as "first": identical, so within noise
    seed = Reference("extra", "wrn-10-1", "wrn", seed=5, if_noise=("first", "twin"))
    assert run_plan((tiny_plan[0], twin, seed), tiny_data, runs, budget=600, device="cpu")
    assert (runs / "extra").is_dir()
    rows = pair_table([Pair("key", "claim", "first", "twin", "paper", seeds=(("first", "extra"),))], runs)
    assert list(rows.verdict)[0] == "within noise at this size" and rows.paired.all() and len(rows) == 2

    for name, right in (("first", True), ("twin", False)):  # now "first" beats "twin" on all 16 test images
        log = dk.RunLog.read(runs / name)
        correct, digest = log.test_correct()
        log.write_test_correct(log.last["epoch"], correct | True if right else correct & False, digest)
    assert dk.compare.compare_runs(runs / "first", runs / "twin").verdict == "shown"
    lone = Reference("lone", "wrn-10-1", "wrn", seed=6, if_noise=("first", "twin"))
    assert run_plan((tiny_plan[0], twin, lone), tiny_data, runs, budget=600, device="cpu")
    assert not (runs / "lone").exists()
    shown = table((tiny_plan[0], twin, lone), runs).set_index("run").epochs
    assert shown["lone"] == "not needed" and shown["twin"] == "2/2"
    waiting = replace(lone, if_noise=("first", "untrained"))  # its pair is not complete: it may still be needed
    assert table((tiny_plan[0], waiting), runs).set_index("run").epochs["lone"] == "0/2"


def test_budgeted_calls_train_the_plan_in_order_and_resume_to_the_uninterrupted_logs(tmp_path, tiny_data,
                                                                                     tiny_plan):
    runs = tmp_path / "runs"
    epochs = lambda: [len(dk.RunLog.read(runs / r.name).rows) if (runs / r.name).exists() else 0 for r in tiny_plan]
    torch.manual_seed(999)  # the plan seeds each run itself
    assert not run_plan(tiny_plan, tiny_data, runs, budget=1e-3, device="cpu")  # one epoch, the least a call trains
    assert epochs() == [1, 0]
    assert not run_plan(tiny_plan, tiny_data, runs, budget=1e-3, device="cpu")  # its last epoch does not fit in 1 ms
    assert epochs() == [1, 0]
    assert run_plan(tiny_plan[:1], tiny_data, runs, budget=600, device="cpu")  # "first" finishes
    assert not run_plan(tiny_plan, tiny_data, runs, budget=1e-3, device="cpu")  # skips "first", begins "second"
    assert epochs() == [2, 1]
    assert run_plan(tiny_plan, tiny_data, runs, budget=600, device="cpu")
    assert epochs() == [2, 2]
    assert run_plan(tiny_plan, tiny_data, runs, budget=1e-3, device="cpu")  # nothing left: trains nothing

    torch.manual_seed(4)
    whole = dk.fit(dk.build_model("wrn-10-1", num_classes=4), tiny_data, TINY.replace(seed=4), out=tmp_path / "w",
                   progress=False, device="cpu")
    strip = lambda rows: [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in rows]
    assert strip(dk.RunLog.read(runs / "second").rows) == strip(whole.rows)  # seeded by the plan, not the caller


def test_export_ships_log_and_provenance_but_no_checkpoint_and_table_reads_them(tmp_path, tiny_data, tiny_plan):
    runs, results = tmp_path / "runs", tmp_path / "results"
    run_plan(tiny_plan[:1], tiny_data, runs, budget=600, device="cpu")
    assert export(tiny_plan, runs, results) == [results / "first"]  # "second" never started
    assert sorted(p.name for p in (results / "first").iterdir()) == ["config.json", "log.jsonl", "reference.json",
                                                                      "test_correct.json"]
    note = json.loads((results / "first/reference.json").read_text())
    assert note["epochs_done"] == 2 and "--only first" in note["command"]

    shown = table(tiny_plan, results).set_index("run")
    last = dk.RunLog.read(results / "first").last["test_acc"]
    assert shown.loc["first", "error_%"] == pytest.approx(100 * (1 - last), abs=0.01)
    assert shown.loc["first", "epochs"] == "2/2" and shown.loc["second", "epochs"] == "0/2"
    assert shown.loc["first", "paper_error_%"] == 5.0 and "synthetic" in shown.loc["first", "data"]


def test_shipped_provenance_names_the_data_by_file_not_by_the_folder_it_was_read_from():
    header = {"model": {"name": "wrn-10-2"}, "data": {"source": "downloads/cifar/cifar10-jpeg.tar.xz", "sha256": "ab"}}
    shipped = reference._shipped_header(header)
    assert shipped["data"] == {"source": "cifar10-jpeg.tar.xz", "sha256": "ab"} and shipped["model"] == header["model"]
    assert header["data"]["source"].startswith("downloads/")  # the run's own config.json is untouched
    assert reference._shipped_header({"data": {"source": "cifar10"}})["data"]["source"] == "cifar10"


def test_export_refuses_an_oversized_file_a_shorter_run_or_another_setup_and_copies_nothing(tmp_path, tiny_data,
                                                                                               tiny_plan, monkeypatch):
    runs, results = tmp_path / "runs", tmp_path / "results"
    run_plan(tiny_plan[:1], tiny_data, runs, budget=600, device="cpu")
    with monkeypatch.context() as patch:
        patch.setattr(reference, "MAX_FILE_BYTES", 100)
        with pytest.raises(ValueError, match="over the .* MB a shipped file may weigh"):
            export(tiny_plan, runs, results)
    assert not results.exists()

    export(tiny_plan, runs, results)
    run_plan(tiny_plan[1:], tiny_data, tmp_path / "elsewhere", budget=1e-3, device="cpu")  # 1 of 2 epochs
    (runs / "first").rename(tmp_path / "kept")
    (tmp_path / "elsewhere/second").rename(runs / "first")  # seed 4 where the plan's "first" has seed 3
    with pytest.raises(ValueError, match="is not the plan's first"):
        export(tiny_plan, runs, results)
    shorter = (Reference("first", "wrn-10-1", "wrn", seed=4),)
    with pytest.raises(ValueError, match="holds 2 epochs, .* only 1"):
        export(shorter, runs, results)
    assert len(dk.RunLog.read(results / "first").rows) == 2


def test_command_line_table_and_bad_entry(tmp_path, capsys):
    assert reference.main(["table", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert all(r.name in out for r in PLAN) and "0/200" in out
    assert all(f"{p.key}: {p.claim}. Paper: {p.paper}" in out for p in PAIRS["gpu"])
    with pytest.raises(SystemExit) as stop:
        reference.main(["run", "--budget", "5", "--only", "wrn-28-100"])
    assert stop.value.code == 2 and "not in the gpu plan: wrn-28-100" in capsys.readouterr().err
    assert reference.main(["run", "--budget", "-1"]) == 2
    assert "--budget must be a positive" in capsys.readouterr().err


def test_evidence_reads_a_pair_from_results_or_says_how_to_make_it(tmp_path, tiny_data, tiny_plan, monkeypatch,
                                                                    capsys):
    absent = reference.evidence("dirac", tmp_path)
    assert not absent.findings and "--only diracnet-34-1 plain-34-1" in absent.missing
    assert absent.show() is None and "No cpu reference runs" in capsys.readouterr().out
    pair = Pair("dirac", "a beats b", "first", "second", "paper figure")
    monkeypatch.setitem(reference.PAIRS, "cpu", (pair,))
    run_plan(tiny_plan, tiny_data, tmp_path, budget=600, device="cpu")
    found = reference.evidence("dirac", tmp_path)
    assert [f.claim for f in found.findings] == ["a beats b [first vs second]"] and found.runs[0].name == "first"
    assert found.findings[0].paper == "paper figure" and found.findings[0].low is not None
    for low, high, verdict in ((0.01, 0.02, SHOWN), (-0.02, -0.01, CONTRADICTED)):  # the same logs, either verdict
        monkeypatch.setattr(reference, "compare_runs",
                            lambda *args, **kw: replace(compare_runs(*args, **kw), low=low, high=high))
        finding = reference.evidence("dirac", tmp_path).findings[0]
        assert finding.verdict == verdict
        assert ("training images" in finding.note) == (verdict == CONTRADICTED)  # a contradiction says why
    with pytest.raises(ValueError, match="no cpu reference pair 'vit'"):
        reference.evidence("vit", tmp_path)
