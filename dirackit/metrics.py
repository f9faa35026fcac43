"""What a model costs: trainable parameters, multiply-adds, and measured inference and training speed.

Every speed here is measured with ``timed_in_turns``: the candidates take turns within each round and
each keeps its best round, so a slow moment of the machine cannot land on one of them only, and the
ratios between them are the meaningful figures.
"""
from __future__ import annotations

import time
from typing import Callable, Hashable

import torch
import torch.nn.functional as F
from torch import nn

from .folding import fold
from .precision import autocast_factory, backward_and_step, grad_scaler

__all__ = ["count_params", "count_macs", "timed_in_turns", "inference_speed", "fold_speed", "training_speed"]


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BatchNorm running statistics and buffers are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, ...] = (1, 3, 32, 32)) -> int:
    """Multiply-adds of one forward pass of a single image, convs and linear layers only.

    Measured with forward hooks on a zero input, so any architecture is counted as it really runs
    (strides, groups). The batch dimension of ``input_size`` is divided out.
    """
    total = 0

    def conv_hook(m: nn.modules.conv._ConvNd, _, out: torch.Tensor) -> None:
        nonlocal total
        per_output = m.weight.shape[1] * m.weight[0, 0].numel()  # (in/groups) * kernel taps
        total += out.numel() * per_output

    def linear_hook(m: nn.Linear, _, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else "cpu"
        model(torch.zeros(input_size, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return total // input_size[0]


def timed_in_turns(steps_of: dict[Hashable, Callable[[], object]], steps: int, repeats: int,
                   device: str | torch.device = "cpu") -> dict[Hashable, float]:
    """Best seconds for ``steps`` calls of each function, timed in turns after one warm-up call each
    (``repeats`` rounds; on CUDA the device is synchronised around every timed stretch)."""
    device = torch.device(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step in steps_of.values():
        step()
    best = dict.fromkeys(steps_of, float("inf"))
    for _ in range(repeats):
        for name, step in steps_of.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


@torch.inference_mode()
def inference_speed(models: dict[str, nn.Module], batch_size: int = 256, steps: int = 10, repeats: int = 3,
                    device: str | torch.device = "cpu") -> dict[str, float]:
    """Eval-mode images per second of each model on random 32x32 batches, measured in one run.

    The models are timed in turns (``repeats`` rounds of ``steps`` batches) and each keeps its best
    round. Ratios between the results are the meaningful part; the models are moved to ``device``.
    """
    device = torch.device(device)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    models = {name: m.to(device).eval() for name, m in models.items()}
    best = timed_in_turns({name: (lambda m=m: m(x)) for name, m in models.items()}, steps, repeats, device)
    return {name: steps * batch_size / seconds for name, seconds in best.items()}


def fold_speed(models: dict[str, nn.Module], batch_size: int = 256, steps: int = 10, repeats: int = 3,
               device: str | torch.device = "cpu", *, precision: str = "fp32",
               channels_last: bool = False) -> dict[str, dict[str, float]]:
    """Eval-mode images per second of each model as it is and after ``dirackit.fold``, every form of
    every model timed in the same rounds, with ``fold_speedup`` = folded / unfolded images/s (above 1:
    folding made inference faster). Returns ``{name: {"unfolded_img_s", "folded_img_s", "fold_speedup"}}``.

    ``precision`` (as ``Recipe.precision``; "auto": what ``fit`` picks for the device) and
    ``channels_last`` run the models as ``fit`` does on a GPU; the models are moved to ``device``.
    """
    device = torch.device(device)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    forms = {}
    for name, model in models.items():
        model = model.to(device).eval()
        forms[name, "unfolded"] = model.to(memory_format=layout)
        forms[name, "folded"] = fold(model).to(memory_format=layout)
    x = torch.randn(batch_size, 3, 32, 32, device=device).contiguous(memory_format=layout)
    autocast = autocast_factory(precision, device)

    def forward_of(model: nn.Module) -> Callable[[], None]:
        def forward() -> None:
            with torch.inference_mode(), autocast():
                model(x)
        return forward

    best = timed_in_turns({key: forward_of(m) for key, m in forms.items()}, steps, repeats, device)
    speed = {key: steps * batch_size / seconds for key, seconds in best.items()}
    return {name: {"unfolded_img_s": speed[name, "unfolded"], "folded_img_s": speed[name, "folded"],
                   "fold_speedup": speed[name, "folded"] / speed[name, "unfolded"]} for name in models}


def training_speed(models: dict[str, nn.Module], batch_size: int = 128, steps: int = 10, repeats: int = 3,
                   device: str | torch.device = "cpu", precision: str = "auto") -> dict[str, float]:
    """Training images per second of each model (forward, backward and an SGD step on random 32x32
    batches), timed in turns as ``inference_speed`` does.

    ``precision`` as ``Recipe.precision``: the default is what the trainer picks for the device (bf16
    or fp16 with a gradient scaler on CUDA, fp32 elsewhere). The timed steps change the models'
    weights and BN statistics: pass copies of models you still need.
    """
    device = torch.device(device)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    with torch.no_grad():
        num_classes = {name: m.to(device).eval()(x[:1]).shape[1] for name, m in models.items()}
    models = {name: m.train() for name, m in models.items()}
    y = {name: torch.randint(n, (batch_size,), device=device) for name, n in num_classes.items()}
    autocast = autocast_factory(precision, device)

    def step_of(name: str) -> Callable[[], None]:
        model = models[name]
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        scaler = grad_scaler(precision, device)

        def step() -> None:
            with autocast():
                loss = F.cross_entropy(model(x).float(), y[name])
            optimizer.zero_grad(set_to_none=True)
            backward_and_step(loss, optimizer, scaler)
        return step

    best = timed_in_turns({name: step_of(name) for name in models}, steps, repeats, device)
    return {name: steps * batch_size / seconds for name, seconds in best.items()}
