"""``paths``: the reference training style against dirackit's fast path, measured in the same run.

For each model: training img/s of both paths, timed in turns (a slow moment of the machine cannot
land on one path only), their ratio, peak device memory of each, each one's model-FLOP utilisation
against the matmul peak measured in the same run, and inference img/s before and after
``dirackit.fold``. The two paths start from the same initial weights and train with the model's
paper recipe (``steps.py`` says what each path does).
"""
from __future__ import annotations

import copy
import gc
import time
from dataclasses import dataclass

import torch

from ..data import CifarData
from ..metrics import count_macs, count_params, fold_speed
from ..recipes import get_recipe
from ..registry import build_model, model_card
from .inputs import reference_loader
from .peak import MatmulPeak, matmul_peak, mfu
from .steps import Step, fast_step, reference_step

__all__ = ["path_speed", "WARMUP_STEPS"]

WARMUP_STEPS = 3  # untimed steps after building a path: cuDNN autotuning, compilation, CUDA-graph recording


@dataclass
class _Path:
    step: Step
    lead_in: int             # untimed steps before every timed round
    resident: int | None     # device bytes the path keeps between steps (CUDA only)
    warmup_s: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _built(make, lead_in: int, device: torch.device) -> _Path:
    """Build a path and warm it up, recording the time that took and the memory it keeps."""
    cuda = device.type == "cuda"
    _sync(device)
    before = torch.cuda.memory_allocated(device) if cuda else 0
    t0 = time.perf_counter()
    step = make()
    for _ in range(WARMUP_STEPS + lead_in):
        step()
    _sync(device)
    resident = torch.cuda.memory_allocated(device) - before if cuda else None
    return _Path(step, lead_in, resident, time.perf_counter() - t0)


def _timed_rounds(paths: dict[str, _Path], steps: int, repeats: int,
                  device: torch.device) -> dict[str, tuple[float, int | None]]:
    """Best seconds for ``steps`` steps of each path, in turns; and its peak memory (CUDA only).

    Each round starts with the path's ``lead_in`` untimed steps: while the other path ran, a
    DataLoader's workers kept filling their prefetch queue, and those ready batches would
    otherwise come for free. Peak memory is what the path keeps plus the most one of its rounds
    allocated on top, so the other path's tensors never count.
    """
    cuda = device.type == "cuda"
    best = dict.fromkeys(paths, float("inf"))
    extra = dict.fromkeys(paths, 0)
    for _ in range(repeats):
        for name, path in paths.items():
            _sync(device)
            if cuda:
                start = torch.cuda.memory_allocated(device)
                torch.cuda.reset_peak_memory_stats(device)
            for _ in range(path.lead_in):
                path.step()
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                path.step()
            _sync(device)
            best[name] = min(best[name], time.perf_counter() - t0)
            if cuda:
                extra[name] = max(extra[name], torch.cuda.max_memory_allocated(device) - start)
    return {name: (best[name], None if path.resident is None else path.resident + extra[name])
            for name, path in paths.items()}


def path_speed(names: list[str], data: CifarData, *, batch_size: int | None = None,
               fast_batch_size: int | None = None, steps: int = 20, repeats: int = 3, workers: int = 4,
               compile_mode: str | None = None, peak: MatmulPeak | None = None,
               device: str | torch.device = "cpu") -> list[dict]:
    """One row per model: both paths' training img/s, peak memory and MFU, and fold's inference speed-up.

    ``batch_size``: the reference path's batch (default: the model's recipe, i.e. its paper);
    ``fast_batch_size``: the fast path's (default: the same), also used for inference. ``workers``:
    DataLoader processes of the reference path. ``compile_mode``: None, or a ``torch.compile`` mode
    for the fast path (resolve it for the device with ``steps.compile_mode_for`` first).
    ``peak`` defaults to ``matmul_peak(device)`` measured now. Memory is None off CUDA.
    """
    device = torch.device(device)
    batches = {}
    for name in names:
        ref_batch = batch_size or get_recipe(model_card(name).recipe).batch_size
        batches[name] = ref_batch, fast_batch_size or ref_batch
        for b in batches[name]:
            if not 1 <= b <= len(data.train_labels):
                raise ValueError(f"batch size must be in [1, {len(data.train_labels)}] (the training images), "
                                 f"got {b}")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as fit() sets it; both paths profit
    peak = peak or matmul_peak(device)
    rows = []
    for name in names:
        rows.append(_measure(name, data, *batches[name], steps, repeats, workers, compile_mode, peak, device))
        gc.collect()  # the measurement's DataLoader workers stop and its device memory is freed
        if compile_mode is not None:
            torch.compiler.reset()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _measure(name: str, data: CifarData, ref_batch: int, fast_batch: int, steps: int, repeats: int, workers: int,
             compile_mode: str | None, peak: MatmulPeak, device: torch.device) -> dict:
    recipe = get_recipe(model_card(name).recipe)
    torch.manual_seed(0)
    ref_model = build_model(name, num_classes=data.num_classes)
    fast_model = copy.deepcopy(ref_model)  # both paths start from the same weights
    macs = count_macs(ref_model)
    loader = reference_loader(data, ref_batch, workers, pin_memory=device.type == "cuda", seed=recipe.seed)
    paths = {
        "reference": _built(lambda: reference_step(ref_model, loader, recipe, device), 2 * workers, device),
        "fast": _built(lambda: fast_step(fast_model, data, recipe, fast_batch, device, compile_mode), 0, device),
    }
    timed = _timed_rounds(paths, steps, repeats, device)
    ref_img_s = steps * ref_batch / timed["reference"][0]
    fast_img_s = steps * fast_batch / timed["fast"][0]
    cuda = device.type == "cuda"  # inference as the fast path runs: fit's precision, channels_last on CUDA
    inference = fold_speed({name: fast_model}, fast_batch, steps, repeats, device, precision="auto",
                           channels_last=cuda)
    return {"model": name, "params": count_params(ref_model), "macs": macs, "batch": ref_batch,
            "fast_batch": fast_batch, "ref_img_s": ref_img_s, "fast_img_s": fast_img_s,
            "ratio": fast_img_s / ref_img_s, "ref_peak_bytes": timed["reference"][1],
            "fast_peak_bytes": timed["fast"][1], "ref_mfu": mfu(ref_img_s, macs, peak.flops),
            "fast_mfu": mfu(fast_img_s, macs, peak.flops), "fast_warmup_s": paths["fast"].warmup_s,
            **inference[name]}
