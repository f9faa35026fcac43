"""Checkpoints: written atomically, loaded with weights_only, RNG state restored exactly."""
import pytest
import torch

from dirackit.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state


def test_a_checkpoint_round_trips_tensors_and_plain_values(tmp_path):
    state = {"epoch": 3, "model": {"w": torch.randn(2, 3)}, "recipe": {"lr": 0.1, "milestones": [1, 2]}}
    save_checkpoint(state, tmp_path / "checkpoint.pt")
    loaded = load_checkpoint(tmp_path / "checkpoint.pt")
    assert loaded["epoch"] == 3 and loaded["recipe"] == state["recipe"]
    assert torch.equal(loaded["model"]["w"], state["model"]["w"])
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temporary file left behind


def test_a_damaged_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint({"w": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot be read .*no earlier checkpoint of this run is intact: train it again in a new folder"):
        load_checkpoint(path)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def test_rng_state_restores_the_random_stream(tmp_path):
    torch.manual_seed(1)
    save_checkpoint({"rng": rng_state()}, tmp_path / "rng.pt")
    expected = torch.rand(5)
    torch.rand(7)  # move the stream on
    set_rng_state(load_checkpoint(tmp_path / "rng.pt")["rng"])
    assert torch.equal(torch.rand(5), expected)
