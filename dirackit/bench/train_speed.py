"""``train``: training speed of models in the same rounds, each as a step-time ratio to the first.

What a DBB's branches cost over the plain network: ``train --models vgg16 vgg16-dbb vgg16-odbb``.
"""
from __future__ import annotations

import torch

from ..metrics import count_macs, count_params, training_speed
from ..registry import build_model

__all__ = ["train_speed"]


def train_speed(names: list[str], batch_size: int = 128, steps: int = 10, repeats: int = 3,
                device: str | torch.device = "cpu") -> list[dict]:
    """Training img/s of freshly built models, and each one's step time relative to the first."""
    models = {}
    for name in names:
        torch.manual_seed(0)
        models[name] = build_model(name)
    rows = [{"model": name, "params": count_params(m), "macs": count_macs(m)} for name, m in models.items()]
    speed = training_speed(models, batch_size, steps, repeats, device)
    for row in rows:
        row["train_img_s"] = speed[row["model"]]
        row["step_time_ratio"] = speed[names[0]] / row["train_img_s"]
    return rows
