"""The four papers the course tests, and the CIFAR figures they report, each with where it comes from.

Notebooks print these beside their own numbers, so a learner sees what the paper measured (full
networks, hundreds of epochs, five runs) next to what a short run here measured. Figures are as the
papers print them: test *error* in % for WRN and DiracNet tables, *accuracy* in % where the paper
plots or tabulates accuracy; ``Figure.unit`` says which.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Figure", "Paper", "WRN", "DIRACNET", "DGCONV", "DBB", "PAPERS"]


@dataclass(frozen=True)
class Figure:
    """One number a paper reports, e.g. WRN-28-10's CIFAR-10 error."""

    network: str
    value: float
    unit: str        # "% error" or "% accuracy"
    dataset: str     # "CIFAR-10", "CIFAR-100", "ImageNet"
    source: str      # where in the paper (or its authors' repository) the number is

    def __str__(self) -> str:
        return f"{self.network}: {self.value:g}{self.unit} on {self.dataset} ({self.source})"


@dataclass(frozen=True)
class Paper:
    """A paper, the one claim the course tests from it, and its reported figures."""

    key: str
    citation: str
    url: str
    claim: str
    figures: tuple[Figure, ...]

    def figure(self, network: str, dataset: str = "CIFAR-10") -> Figure | None:
        """The paper's figure for ``network`` (case-insensitive), or None when the paper has none."""
        wanted = network.lower()
        return next((f for f in self.figures if f.network.lower() == wanted and f.dataset == dataset), None)

    def versus(self, a: str, b: str, dataset: str = "CIFAR-10") -> str:
        """The paper's figures for networks ``a`` and ``b`` on ``dataset`` ("CIFAR-10" or "cifar10"),
        as one line to print beside a comparison of ours. Where the paper has no such pair on that
        dataset, the line says so and gives the pair it reports on another dataset, if any."""
        dataset = _DATASETS.get(dataset.lower(), dataset)
        pair = self.figure(a, dataset), self.figure(b, dataset)
        if all(pair):
            return f"{pair[0]} vs {pair[1]}"
        for other in dict.fromkeys(f.dataset for f in self.figures):
            found = self.figure(a, other), self.figure(b, other)
            if all(found):
                return f"no {dataset} figure for this pair that we could find; {found[0]} vs {found[1]}"
        return f"the paper reports no figures for {a} vs {b} that we could find"

    def __str__(self) -> str:
        return f"{self.citation} ({self.url}). Claim: {self.claim}"


_DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet"}


_WRN_TABLE = "final table: mean/std preprocessing, no dropout, median of 5 runs"
WRN = Paper(
    "wrn", "Zagoruyko & Komodakis, Wide Residual Networks, BMVC 2016", "https://arxiv.org/abs/1605.07146",
    "for the same number of parameters, a wider and shallower residual network is more accurate (and "
    "faster to train) than a thinner and deeper one",
    (Figure("WRN-40-4", 4.53, "% error", "CIFAR-10", _WRN_TABLE),
     Figure("WRN-16-8", 4.27, "% error", "CIFAR-10", _WRN_TABLE),
     Figure("WRN-28-10", 4.00, "% error", "CIFAR-10", _WRN_TABLE),
     Figure("pre-act ResNet-1001", 4.92, "% error", "CIFAR-10", _WRN_TABLE + " (He et al.'s figure)"),
     Figure("pre-act ResNet-164", 5.46, "% error", "CIFAR-10", _WRN_TABLE + " (He et al.'s figure)"),
     Figure("WRN-40-1", 6.85, "% error", "CIFAR-10", "width/depth table, ZCA-whitened data"),
     Figure("WRN-40-2", 5.33, "% error", "CIFAR-10", "width/depth table, ZCA-whitened data"),
     Figure("WRN-16-4", 5.02, "% error", "CIFAR-10", "dropout table, without dropout, median of 5 runs"),
     Figure("WRN-28-10", 19.25, "% error", "CIFAR-100", _WRN_TABLE)),
)

_DIRAC_FIG1 = "Fig. 1, median of 5 runs, read off the plot (+-0.1)"
DIRACNET = Paper(
    "diracnet", "Zagoruyko & Komodakis, DiracNets: Training Very Deep Neural Networks Without "
    "Skip-Connections, 2017", "https://arxiv.org/abs/1706.00388",
    "with each conv parameterised as a scaled identity plus a normalised kernel, a deep chain without "
    "skip connections trains well, where the same chain with ordinary convs falls behind as depth grows",
    (Figure("DiracNet-34-1", 91.5, "% accuracy", "CIFAR-10", _DIRAC_FIG1),
     Figure("plain-34-1", 89.5, "% accuracy", "CIFAR-10", _DIRAC_FIG1),
     Figure("DiracNet-16-1", 90.7, "% accuracy", "CIFAR-10", _DIRAC_FIG1),
     Figure("plain-16-1", 90.6, "% accuracy", "CIFAR-10", _DIRAC_FIG1),
     Figure("DiracNet-100-1", 91.9, "% accuracy", "CIFAR-10", _DIRAC_FIG1 + "; plain-100-1 is below 88"),
     Figure("DiracNet-34-2", 93.6, "% accuracy", "CIFAR-10", _DIRAC_FIG1),
     Figure("DiracNet-28-10", 4.75, "% error", "CIFAR-10", "Table 2, mean +- 0.16 of 5 runs"),
     Figure("DiracNet-28-5", 5.16, "% error", "CIFAR-10", "Table 2, mean +- 0.14 of 5 runs")),
)

DGCONV = Paper(
    "dgconv", "Zhang et al., Differentiable Learning-to-Group Channels via Groupable Convolutional Neural "
    "Networks, ICCV 2019", "https://arxiv.org/abs/1908.05867",
    "a network that learns each layer's channel grouping end to end, under a budget, is at least as "
    "accurate as one whose grouping is fixed by hand at the same cost",
    (Figure("G-ResNeXt-50", 78.592, "% accuracy", "ImageNet", "top-1, cosine schedule, 120 epochs: the "
                                                              "authors' code, d-li14/dgconv.pytorch README"),
     Figure("ResNeXt-50 (32x4d)", 78.198, "% accuracy", "ImageNet", "the same README's baseline")),
)

_DBB_TABLE = "Table 2, mean of 5 runs"
DBB = Paper(
    "dbb", "Ding et al., Diverse Branch Block: Building a Convolution as an Inception-like Unit, CVPR 2021",
    "https://arxiv.org/abs/2103.13425",
    "training each KxK conv as a block of diverse branches, then converting it into one conv, raises "
    "accuracy at no cost at inference",
    (Figure("VGG-16 + DBB", 94.62, "% accuracy", "CIFAR-10", _DBB_TABLE + " (+-0.02)"),
     Figure("VGG-16", 93.95, "% accuracy", "CIFAR-10", _DBB_TABLE + " (+-0.03)"),
     Figure("VGG-16 + DBB", 75.72, "% accuracy", "CIFAR-100", _DBB_TABLE + " (+-0.07)"),
     Figure("VGG-16", 74.05, "% accuracy", "CIFAR-100", _DBB_TABLE + " (+-0.10)"),
     Figure("ResNet-18 + DBB", 70.99, "% accuracy", "ImageNet", _DBB_TABLE.replace(", mean of 5 runs", "")),
     Figure("ResNet-18", 69.54, "% accuracy", "ImageNet", _DBB_TABLE.replace(", mean of 5 runs", ""))),
)

PAPERS: dict[str, Paper] = {p.key: p for p in (WRN, DIRACNET, DGCONV, DBB)}
