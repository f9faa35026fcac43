"""The GPU fast path, run on the CPU: channels_last weights, bf16 and fp16 autocast (fp16 with its
gradient scaler) and ``torch.compile``, against eager fp32.

A dtype or memory-layout bug in a model (a view that needs contiguous memory, a weight built in the
wrong dtype, a mask that breaks a compiled graph) would otherwise first show on a learner's GPU.
``fit`` keeps the weights in channels_last on CUDA only, so the tests convert them first; its batches
are channels_last on every device.

Tolerances. bf16 keeps 8 significant bits (a relative rounding of 2^-9, 0.2%), fp16 11 (2^-12), and
the rounding of each layer adds up. On the first step of every family, the logits stay within 10%
(bf16) and 2% (fp16) of fp32, relative to their norm, and the gradient points the same way (cosine
similarity >= 0.8 and >= 0.95): VGG-16, 13 conv layers whose BatchNorms normalise few values at test
width, moves most (8% and 1%; the others about 1% and 0.1%). Logits of the wrong images differ by
20% to 140%, and a scrambled layout would leave the gradient unrelated. Over whole ``fit`` runs
(4 steps) of well-conditioned nets the losses stay within 3% (bf16) and 1% (fp16).
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dirackit as dk
from dirackit.train import autocast_for, objective

RECIPE = dk.Recipe(epochs=2, batch_size=16, lr=0.05, schedule="cosine", precision="fp32", channels_last=False)
CPU = torch.device("cpu")
FIRST_STEP = {"bf16": (0.10, 0.8), "fp16": (0.02, 0.95)}  # logits' relative error, gradient cosine
FIT_LOSSES = {"bf16": 0.03, "fp16": 0.01}
# The smallest member of every family, at test width where its builder takes one.
FAMILIES = {"wrn-10-1": {}, "preresnet-11": {}, "diracnet-10-1": {}, "g-resnext-11-8x4d": {"base_channels": 16},
            "vgg16-odbb": {"base_channels": 8}, "resnet18-dbb": {"base_channels": 8}}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _first_step(model: nn.Module, precision: str, x: torch.Tensor, y: torch.Tensor):
    """Logits and the flattened gradient of one forward and backward pass, as ``fit``'s step computes them."""
    model = copy.deepcopy(model)
    if precision != "fp32":
        model = model.to(memory_format=torch.channels_last)
    recipe = RECIPE.replace(precision=precision)
    with autocast_for(recipe, CPU)():
        logits = model(x)
        loss = objective(model, recipe)(logits.float(), y)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return logits, grads


@pytest.mark.parametrize("name", FAMILIES)
def test_every_family_computes_its_first_step_in_bf16_and_fp16_as_in_fp32(name):
    torch.manual_seed(0)
    model = dk.build_model(name, num_classes=4, **FAMILIES[name]).train()
    x = torch.randn(16, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(4, (16,))
    logits, grads = _first_step(model, "fp32", x, y)
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        fast_logits, fast_grads = _first_step(model, precision, x, y)
        assert fast_logits.dtype == dtype  # autocast really ran the last layer in that precision
        error = ((fast_logits.float() - logits).norm() / logits.norm()).item()
        cosine = F.cosine_similarity(fast_grads, grads, dim=0).item()
        assert error <= FIRST_STEP[precision][0] and cosine >= FIRST_STEP[precision][1], (precision, error, cosine)


def _losses(model: nn.Module, data, recipe: dk.Recipe) -> list[float]:
    """Each epoch's training loss and the final test loss of a ``fit`` run."""
    run = dk.fit(model, data, recipe, progress=False, device="cpu")
    return [row["train_loss"] for row in run.rows] + [run.rows[-1]["test_loss"]]


def _assert_close(fast: list[float], reference: list[float], rel: float) -> None:
    assert fast == pytest.approx(reference, rel=rel), f"{fast} vs fp32 {reference}"
    assert fast != reference  # the precision really changed what was computed


@pytest.mark.parametrize("name, precision", [("wrn-10-1", "bf16"), ("diracnet-10-1", "fp16")])
def test_fit_trains_in_bf16_and_fp16_with_channels_last_as_in_fp32(name, precision, make_data, monkeypatch):
    """fp16 through its gradient scaler, started at 2^12: at its default 2^16 the scaler skips the first
    two of these four steps while it finds its scale (``test_train`` covers skipping), and the
    comparison is of fp16's arithmetic, scaled and unscaled, not of the steps taken."""
    import dirackit.train as train
    scalers = []

    def gentle_scaler(precision: str, device) -> torch.amp.GradScaler | None:
        if precision != "fp16":
            return None
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0 ** 12))
        return scalers[-1]
    monkeypatch.setattr(train, "grad_scaler", gentle_scaler)
    data = make_data(num_classes=4, train_per_class=8, test_per_class=2)
    torch.manual_seed(0)
    model = dk.build_model(name, num_classes=4)
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    reference = _losses(model, data, RECIPE)
    _assert_close(_losses(fast, data, RECIPE.replace(precision=precision, channels_last=True)), reference,
                  FIT_LOSSES[precision])
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in fast.parameters() if p.ndim == 4)
    assert [s.get_scale() for s in scalers] == ([2.0 ** 12] if precision == "fp16" else [])  # none skipped


class _Tiny(nn.Module):
    """Two conv layers, the second a Dirac conv, with BatchNorm: the parts of a DiracNet in the fewest
    kernels, so inductor's C++ build of forward and backward stays short."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                      dk.layers.DiracConv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        return self.head(self.features(x))


@pytest.mark.compile
def test_compiled_bf16_channels_last_training_matches_eager_fp32(make_data):
    """What ``fit`` runs on a GPU with ``compile=True``, on the CPU (inductor builds C++ here, Triton there:
    the graph capture, autocast and layout handling in between are the same)."""
    data = make_data(num_classes=4, train_per_class=8, test_per_class=2)
    torch.manual_seed(0)
    model = _Tiny()
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    reference = _losses(model, data, RECIPE)
    torch.compiler.reset()
    compiled = _losses(fast, data, RECIPE.replace(precision="bf16", channels_last=True, compile=True))
    _assert_close(compiled, reference, FIT_LOSSES["bf16"])
