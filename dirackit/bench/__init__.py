"""Benchmarks that print measured figures: ``python -m dirackit.bench SUBCOMMAND``.

- ``fold``: inference img/s of each model before and after ``dirackit.fold``, all in the same
  interleaved rounds, with each model's ``fold_speedup`` (``fold_speed.py``).
- ``train``: training img/s of models in the same rounds, each as a step-time ratio to the first:
  what a DBB's branches cost over the plain network (``train_speed.py``).
- ``dgmask``: what building a DGConv's mask costs next to the layer's own step (``dgmask.py``).
- ``dirac-ops``: aten ops (about the kernel launches on a GPU) and time of a DiracNet training step
  with its Dirac weights computed layer by layer against all in one fused step (``diracops.py``).
- ``paths``: per architecture at its paper size, the reference training style (fp32, eager, PIL
  DataLoader with workers) against dirackit's fast path, in the same rounds: img/s, peak memory,
  ratio, MFU against the matmul peak measured in the same run, and inference before and after
  folding (``paths.py``, ``steps.py``, ``peak.py``, ``inputs.py``).
- ``time-to-accuracy``: seconds ``fit`` needs to reach a test accuracy with a recipe (``accuracy.py``).
- ``gpu-check``: the commands above that measure the performance targets, in order of value, each
  within its time budget, ending with one table of target, measured, verdict (``gpu_check.py``).

Every output starts with the command, device, torch version and date (``cli.py``), so it can be
saved under ``benchmarks/`` as it is.
"""
from .accuracy import time_to_accuracy
from .cli import main
from .dgmask import mask_cost
from .diracops import dirac_ops
from .fold_speed import fold_table
from .paths import path_speed
from .peak import MatmulPeak, matmul_peak, mfu, training_flops
from .train_speed import train_speed

__all__ = ["fold_table", "train_speed", "mask_cost", "dirac_ops", "path_speed", "matmul_peak", "MatmulPeak", "mfu",
           "training_flops", "time_to_accuracy", "main"]
