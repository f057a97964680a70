"""Precision, recall, density and coverage (Kynkäänniemi et al. 2019; Naeem et al. 2020)
of two feature sets, through Naeem et al.'s `prdc` package, for `gan.metrics.scores`."""

from __future__ import annotations

import io
from contextlib import redirect_stdout

import joblib
import torch
from prdc import compute_prdc
from threadpoolctl import threadpool_limits
from torch import Tensor


def prdc_scores(real: Tensor, fake: Tensor, nearest_k: int = 5) -> dict[str, Tensor]:
    """Precision, recall, density and coverage of `fake` (M, F) against `real` (N, F) features.

    Naeem et al.'s own code (`prdc.compute_prdc`). Each sample has a ball: around it, out to
    its k-th nearest neighbour in its own set (itself not counted), open (a point on the
    sphere is outside). `precision`: share of fakes in at least one real ball; `recall`:
    share of reals in at least one fake ball; `density`: real balls around each fake, / k,
    averaged over the fakes; `coverage`: share of reals with a fake in their ball.

    Computed on the CPU (inputs on any device) on one thread, as gan.metrics.scores._one_cpu_thread does for
    torch: prdc asks sklearn for 8 threads and BLAS takes every core, which only costs at
    these sizes (1,000 x 128 each side, 2 cores: 0.21 s that way, 0.04 s on one thread).
    Memory and time grow as M^2 (fake-vs-fake distances): 10,000 fakes take ~1.2 GB, ~4 s.
    Returns 0-dim float32 tensors on `fake`'s device; all NaN when either set has fewer
    than nearest_k + 2 samples (prdc's k-NN needs as many).
    """
    if min(len(real), len(fake)) < nearest_k + 2:
        nan = torch.tensor(float("nan"), device=fake.device)
        return {key: nan.clone() for key in ("precision", "recall", "density", "coverage")}
    real_np = real.detach().float().cpu().numpy()
    fake_np = fake.detach().float().cpu().numpy()
    with (
        redirect_stdout(io.StringIO()),  # prdc prints "Num real: N Num fake: M" every call
        joblib.parallel_config(backend="sequential"),  # overrides its n_jobs=8
        threadpool_limits(limits=1),
    ):
        scores = compute_prdc(real_features=real_np, fake_features=fake_np, nearest_k=nearest_k)
    return {
        key: torch.tensor(float(value), dtype=torch.float32, device=fake.device)
        for key, value in scores.items()
    }


def named_prdc(scores: dict[str, Tensor]) -> dict[str, Tensor]:
    """prdc's `coverage` -> `prdc_coverage`, apart from `class_stats`' class count."""
    return {("prdc_coverage" if k == "coverage" else k): v for k, v in scores.items()}
