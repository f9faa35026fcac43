"""The weight init of Zagoruyko & Komodakis' reference code, shared by WRN and DiracNet."""
from __future__ import annotations

from torch import nn

from ..layers import DiracConv2d


def reference_init(model: nn.Module) -> None:
    """He-normal (fan-in) conv and linear weights, zero biases, BN weight ~ U(0, 1) and bias 0
    (WRN ``pytorch/utils.py``, DiracNet v2); Dirac convs also reset alpha = 1, beta = 0.1."""
    for m in model.modules():
        if isinstance(m, DiracConv2d):
            m.reset_parameters()
        elif isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight)
            nn.init.zeros_(m.bias)
