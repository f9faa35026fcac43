"""What a model costs: trainable parameters, multiply-adds, and measured inference speed."""
from __future__ import annotations

import time

import torch
from torch import nn

__all__ = ["count_params", "count_macs", "inference_speed"]


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


@torch.inference_mode()
def inference_speed(models: dict[str, nn.Module], batch_size: int = 256, steps: int = 10, repeats: int = 3,
                    device: str | torch.device = "cpu") -> dict[str, float]:
    """Eval-mode images per second of each model on random 32x32 batches, measured in one run.

    The models are timed in turns (``repeats`` rounds of ``steps`` batches after one warm-up batch)
    and each keeps its best round, so a slow moment of the machine does not land on one model only.
    Ratios between the results are the meaningful part; the models are moved to ``device``.
    """
    device = torch.device(device)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    models = {name: m.to(device).eval() for name, m in models.items()}
    for m in models.values():
        m(x)
    best = dict.fromkeys(models, float("inf"))
    for _ in range(repeats):
        for name, m in models.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                m(x)
            sync()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: steps * batch_size / seconds for name, seconds in best.items()}
