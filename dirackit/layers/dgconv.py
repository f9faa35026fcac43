"""DGConv: a conv whose channel-group structure is learned (Zhang et al., ICCV 2019, arXiv:1908.05867).

A square ``C -> C`` conv (``C = 2**K``) carries K real gates ``g~``. Each gate is binarised,
``g_k = [g~_k >= 0]``, and the binary gates pick the relationship matrix

    U = U_1 (x) U_2 (x) ... (x) U_K,    U_k = (1 - g_k) * I_2 + g_k * ones(2, 2)

(gate 1: a dense 2x2 factor, gate 0: an identity factor). The conv runs with ``W * U[:, :, None,
None]``: ``U[o, i]`` switches the filter slice from input channel i to output channel o on or off.

Number the K bits of a channel index most-significant first (bit k belongs to factor ``U_k``).
Then ``U[o, i] = 1`` exactly when o and i agree on every bit whose gate is 0, so U is a grouped
conv up to a channel permutation: ``2**(K - sum g)`` groups of ``2**sum(g)`` channels, the group of
a channel being its bits at the zero gates. ``channel_order()`` sorts the channels by group, and
``fold()`` turns the trained layer into a real ``nn.Conv2d(groups=G)`` between two channel
permutations.

Gradients reach ``g~`` through a straight-through estimator, ``g = step(g~) + (g~ - g~.detach())``:
the forward sees exactly 0 or 1, the backward treats the step as the identity (as the reference's
``.data`` swap does, without bypassing autograd).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

__all__ = ["DGConv2d", "ChannelPermutation", "gate_mask"]

GATE_INIT = 1e-8  # |g~| at initialisation: random signs, as in the reference (commit bfb0146)


def _channel_bits(channels: int) -> torch.Tensor:
    """(K, C) bits of every channel index, most-significant first."""
    K = channels.bit_length() - 1
    shifts = torch.arange(K - 1, -1, -1)
    return (torch.arange(channels)[None, :] >> shifts[:, None]) & 1


def gate_mask(gates: torch.Tensor) -> torch.Tensor:
    """The C x C matrix ``U`` of binary (or straight-through) gates, ``C = 2**len(gates)``.

    The chain of Kronecker products, differentiable in ``gates``. It writes about 4/3 C**2 entries
    against K C**2 for the closed form taken entry by entry, and measured 1.2-2x faster on a CPU
    (``python -m dirackit.bench dgmask``); either is at most 2% of the layer's own step.
    """
    eye = torch.eye(2, dtype=gates.dtype, device=gates.device)
    ones = torch.ones(2, 2, dtype=gates.dtype, device=gates.device)
    mask = torch.ones(1, 1, dtype=gates.dtype, device=gates.device)
    for g in gates:
        mask = torch.kron(mask, (1 - g) * eye + g * ones)
    return mask


class ChannelPermutation(nn.Module):
    """``x[:, order]``: a fixed reordering of the channel dimension."""

    def __init__(self, order: torch.Tensor):
        super().__init__()
        self.register_buffer("order", order.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.order)

    def extra_repr(self) -> str:
        return f"channels={self.order.numel()}"


class DGConv2d(nn.Conv2d):
    """``nn.Conv2d(C, C, ...)`` whose channel groups are learned (see the module docstring).

    ``gates`` holds the real gates ``g~`` (set them with ``set_gates``); ``learned_groups`` is the
    current group count (``groups`` keeps its ``nn.Conv2d`` meaning: 1, the weight is dense);
    ``mask()`` is U; ``complexity()`` is the layer's share of the budget, ``zeta = 2**(K + sum g)``
    = the nonzeros of U. ``weight`` is the dense free tensor, never the masked one.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, bias: bool = False, **kwargs):
        if in_channels != out_channels:
            raise ValueError(f"DGConv2d needs in_channels == out_channels (U is square), got "
                             f"{in_channels} -> {out_channels}; put a 1x1 conv before it to change width")
        if in_channels < 2 or in_channels & (in_channels - 1):
            raise ValueError(f"DGConv2d needs a power-of-two channel count >= 2 (U is a Kronecker "
                             f"product of 2x2 factors), got {in_channels}; use e.g. "
                             f"{2 ** round(math.log2(max(in_channels, 2)))}")
        if kwargs.get("groups", 1) != 1:
            raise ValueError("DGConv2d learns its groups: do not pass groups (the weight is dense)")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, bias=bias,
                         **kwargs)
        K = in_channels.bit_length() - 1
        self.gates = nn.Parameter(torch.empty(K, device=self.weight.device, dtype=self.weight.dtype))
        self.register_buffer("bits", _channel_bits(in_channels).to(self.weight.device), persistent=False)
        self.reset_gates()

    def reset_gates(self) -> None:
        """Random gate signs of magnitude 1e-8 (reference init): on average half the gates on."""
        with torch.no_grad():
            signs = torch.randint(0, 2, self.gates.shape, device=self.gates.device) * 2 - 1
            self.gates.copy_(signs * GATE_INIT)

    @torch.no_grad()
    def set_gates(self, pattern: Sequence[int] | str, magnitude: float = GATE_INIT) -> None:
        """Set the binary gates, e.g. ``"0011"`` or ``[0, 0, 1, 1]`` (1 = dense factor)."""
        values = [int(v) for v in pattern]
        if len(values) != self.gates.numel() or set(values) - {0, 1}:
            raise ValueError(f"need {self.gates.numel()} gates of 0/1 for {self.in_channels} channels, "
                             f"got {pattern!r}")
        self.gates.copy_(torch.tensor(values, dtype=self.gates.dtype).mul(2).sub(1).mul(magnitude))

    def binary_gates(self) -> torch.Tensor:
        """Gates in {0, 1} whose gradient flows to ``gates`` unchanged (straight-through)."""
        hard = (self.gates >= 0).to(self.gates.dtype)
        return hard + (self.gates - self.gates.detach())  # exactly 0/1 forward, identity backward

    @property
    def gate_pattern(self) -> str:
        """The binary gates as a string, e.g. ``"0101"``."""
        return "".join(str(int(v)) for v in (self.gates >= 0).tolist())

    @property
    def learned_groups(self) -> int:
        return 2 ** self.gate_pattern.count("0")

    def mask(self) -> torch.Tensor:
        """U, the C x C 0/1 relationship matrix (differentiable in the gates)."""
        return gate_mask(self.binary_gates())

    def complexity(self) -> torch.Tensor:
        """``zeta = 2**(K + sum g)`` = nonzeros of U (differentiable in the gates)."""
        return 2.0 ** (self.gates.numel() + self.binary_gates().sum())

    def masked_weight(self) -> torch.Tensor:
        return self.weight * self.mask()[:, :, None, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.masked_weight(), self.bias)

    def channel_order(self) -> torch.Tensor:
        """Channels sorted by (group, index): groups become contiguous in this order."""
        zero = torch.tensor([c == "0" for c in self.gate_pattern], device=self.bits.device)
        weights = (2 ** torch.arange(self.gates.numel() - 1, -1, -1, device=self.bits.device)) * zero
        group = (self.bits * weights[:, None]).sum(0)
        return torch.argsort(group * self.in_channels + torch.arange(self.in_channels, device=group.device))

    @torch.no_grad()
    def grouped_conv(self) -> tuple[nn.Conv2d, torch.Tensor]:
        """``(conv, order)``: a real ``nn.Conv2d(groups=G)`` that maps ``x[:, order]`` to this
        layer's output in that same channel order."""
        order, G = self.channel_order(), self.learned_groups
        size = self.in_channels // G
        w = self.weight[order][:, order]  # groups are the diagonal blocks of U in this order
        blocks = [w[j * size:(j + 1) * size, j * size:(j + 1) * size] for j in range(G)]
        conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
                         self.dilation, groups=G, bias=self.bias is not None, padding_mode=self.padding_mode,
                         device=self.weight.device, dtype=self.weight.dtype)
        conv.weight.copy_(torch.cat(blocks))
        if self.bias is not None:
            conv.bias.copy_(self.bias[order])
        return conv.train(self.training), order

    def fold(self) -> nn.Module:
        """The same function as a grouped conv with ``C/G`` inputs per filter (MACs / G); wrapped
        in channel permutations unless the groups are already contiguous."""
        conv, order = self.grouped_conv()
        if torch.equal(order, torch.arange(self.in_channels, device=order.device)):
            return conv
        return nn.Sequential(ChannelPermutation(order), conv, ChannelPermutation(torch.argsort(order)))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gates={self.gate_pattern}, learned_groups={self.learned_groups}"
