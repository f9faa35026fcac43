"""``dk.estimate_run_time``: silent and free on a GPU or for small settings; otherwise a measured step,
scaled to the run, and smaller settings that fit in minutes."""
import json
from pathlib import Path

import pytest
import torch

import dirackit as dk
from dirackit import estimate

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.fixture
def no_timing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("measured although it should not have")
    monkeypatch.setattr(estimate, "training_speed", refuse)


def test_small_settings_measure_nothing(tiny_data, no_timing, capsys):
    assert dk.estimate_run_time(dk.build_model("wrn-10-1", num_classes=4), tiny_data, epochs=30,
                                batch_size=16, device="cpu") is None
    assert capsys.readouterr().out == ""


def test_a_cuda_device_measures_nothing(tiny_data, no_timing, monkeypatch, capsys):
    monkeypatch.setattr(estimate, "resolve_device", lambda device: torch.device("cuda"))
    assert dk.estimate_run_time("wrn-28-10", tiny_data, epochs=10**6, batch_size=128) is None
    assert capsys.readouterr().out == ""


def test_large_settings_are_timed_and_scaled_to_the_whole_run(tiny_data, capsys):
    torch.set_num_threads(1)
    net = dk.build_model("wrn-10-1", num_classes=4)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    epochs = 200_000  # x 64 images: over SMALL_FLOPS with a tiny net
    est = dk.estimate_run_time({"wide": net, "vgg16": "vgg16"}, tiny_data, epochs=epochs, batch_size=128,
                               device="cpu", options={"vgg16": {"base_channels": 8}})
    assert list(est.per_image) == ["wide", "vgg16"] and all(s > 0 for s in est.per_image.values())
    train, test = len(tiny_data.train_labels), len(tiny_data.test_labels)
    assert est.seconds == pytest.approx(sum(est.per_image.values()) * epochs * (train + test / 3))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # a copy was timed
    printed = capsys.readouterr().out
    assert printed.strip() == est.message and "2 networks, 200000 epochs of 64 images" in printed
    # the suggestion: the largest of the quick settings that fits in 5 minutes at the measured speed
    took = {s: sum(est.per_image.values()) * s[0] * 4 * (s[1] + s[2] / 3) for s in estimate.QUICK_SETTINGS}
    best = next((s for s in estimate.QUICK_SETTINGS if took[s] <= 300), estimate.QUICK_SETTINGS[-1])
    assert (f"epochs={best[0]}, train_per_class={best[1]}, test_per_class={best[2]} would take about "
            f"{estimate._duration(took[best])}") in printed and "ci/params/" in printed


def test_durations_read_naturally():
    assert [estimate._duration(s) for s in (45, 720, 3.4 * 3600, 2.1 * 86400)] == ["45 s", "12 min", "3.4 h",
                                                                                   "2.1 days"]


def test_no_networks_is_an_error(tiny_data):
    with pytest.raises(ValueError, match="no networks"):
        dk.estimate_run_time([], tiny_data, epochs=1, batch_size=1, device="cpu")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_estimates_before_it_trains(path):
    """The call comes after the networks are built and before the first cell that trains them."""
    cells = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    calls = [i for i, src in enumerate(cells) if "dk.estimate_run_time(" in src]
    trains = [i for i, src in enumerate(cells) if "dk.fit(" in src]
    assert len(calls) == 1 and trains and calls[0] <= trains[0]
