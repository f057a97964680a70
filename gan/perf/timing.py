"""How `gan.bench` times (a), our training step inside `trainer.fit` as it really runs,
and (b), the plain floor (`gan.perf.floor`) that runs the same update code: timers, the
interleaved pairs, peaks of memory and of matmul speed, and the profiler.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import torch
from omegaconf import DictConfig
from torch.profiler import ProfilerActivity

from gan.perf.floor import PlainLoop
from gan.training.build import build


def peak_rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peaks() -> None:
    with contextlib.suppress(OSError):  # Linux: writing 5 resets VmHWM (peak RSS) to now
        Path("/proc/self/clear_refs").write_text("5")
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


class Timer(L.Callback):
    """Seconds per training iteration after `warmup` of them, for (a).

    span=False: a sync and a mark after every iteration; the median drops outliers (a
    busy CPU's hiccups). span=True: a sync at the start and end of the timed `iters` only,
    so a GPU runs ahead of Python as it does in training; the mean over the span.
    """

    def __init__(self, warmup: int, iters: int, span: bool = False) -> None:
        self.warmup, self.iters, self.span = warmup, iters, span
        self.marks: list[float] = []
        self.seen = 0

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.seen += 1
        if not self.span or self.seen in (self.warmup + 1, self.warmup + self.iters + 1):
            sync(trainer.strategy.root_device)
            self.marks.append(time.perf_counter())

    def s_per_iter(self) -> float:
        if self.span:
            first, last = self.marks
            return (last - first) / self.iters
        m = self.marks[self.warmup :]
        return statistics.median(b - a for a, b in zip(m, m[1:]))


def gpu_peak() -> dict[str, float]:
    if not torch.cuda.is_available():
        return {}
    return {"peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}


class Interleave(L.Callback):
    """After each of (a)'s iterations, one iteration of (b): each pair runs within a second.

    (a)'s time is from the end of the previous (b) iteration to this batch's end: the data
    fetch, the step and every hook. Drifts of a shared machine hit both sides of a pair
    alike, so the pairs' ratios are far steadier than whole blocks timed apart.
    """

    def __init__(self, loop: PlainLoop, warmup: int) -> None:
        self.loop, self.warmup = loop, warmup
        self.ours: list[float] = []
        self.plain: list[float] = []
        self.mark: float | None = None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        sync(self.loop.device)
        t0 = time.perf_counter()
        if self.mark is not None:
            self.ours.append(t0 - self.mark)
        self.loop.step()
        sync(self.loop.device)
        self.mark = time.perf_counter()
        self.plain.append(self.mark - t0)

    def pairs(self) -> list[tuple[float, float]]:
        """(b, a) seconds per pair after the warm-ups: (a)'s iteration, then its (b)."""
        return list(zip(self.plain[1:], self.ours))[self.warmup :]


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def matmul_peak(
    device: torch.device, dtype: torch.dtype = torch.float32, repeats: int = 10
) -> float:
    """This machine's matmul rate in `dtype`, FLOP/s, measured now: the best of `repeats`."""
    n = 8192 if device.type == "cuda" else 2048  # big enough to reach the peak, quick enough
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / min(times)  # a peak: the least-disturbed run, not the typical one


class EpochTimer(L.Callback):
    """Writes the wall-clock time of each epoch start (and of the train end) to `path`.

    Start to next start spans the whole epoch: training, validation with the metrics, the
    image callbacks and the checkpoints (Lightning runs ModelCheckpoint's hooks last).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.marks: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.marks.append(time.perf_counter())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.marks.append(time.perf_counter())
        Path(self.path).write_text(json.dumps(self.marks))


def run_lightning(
    cfg: DictConfig,
    iters: int,
    warmup: int,
    accelerator: str,
    span: bool = False,
    extra: tuple[L.Callback, ...] = (),
) -> dict[str, float]:
    """(a): our module, DataModule and default callbacks (the progress bar included, unless
    `trainer.enable_progress_bar=false`) through trainer.fit."""
    L.seed_everything(cfg.seed, workers=True)
    timer = Timer(warmup, iters, span)
    run = build(
        cfg,
        callbacks=[timer, *extra],
        accelerator=accelerator,
        devices=1,
        max_epochs=-1,
        max_steps=(warmup + iters + 1) * (cfg.step_ratio.d_steps + cfg.step_ratio.g_steps),
        enable_model_summary=False,
    )
    reset_peaks()
    run.trainer.fit(run.module, datamodule=run.datamodule)
    return {"s_per_iter": timer.s_per_iter(), "peak_rss_mb": peak_rss_mb(), **gpu_peak()}


def run_plain(
    cfg: DictConfig,
    images: torch.Tensor,
    iters: int,
    warmup: int,
    device: torch.device,
    span: bool = False,
) -> dict[str, float]:
    """(b) alone: `iters` timed iterations after `warmup`."""
    loop = PlainLoop(cfg, images, device)
    reset_peaks()
    times, start = [], 0.0
    for i in range(warmup + iters):
        if not span or i == warmup:  # span: only the timed block's ends wait for the device
            sync(device)
            t0 = start = time.perf_counter()
        loop.step()
        if not span and i >= warmup:
            sync(device)
            times.append(time.perf_counter() - t0)
    if span:
        sync(device)
        times = [(time.perf_counter() - start) / iters]
    return {
        "s_per_iter": statistics.median(times),
        "peak_rss_mb": peak_rss_mb(),
        "flops_per_iter": loop.flops_per_iter(),
        **gpu_peak(),
    }


def run_interleaved(
    cfg: DictConfig,
    images: torch.Tensor,
    iters: int,
    warmup: int,
    accelerator: str,
    device: torch.device,
) -> tuple[list[tuple[float, float]], dict[str, float]]:
    """(a) through trainer.fit with one (b) iteration after each of its iterations."""
    inter = Interleave(PlainLoop(cfg, images, device), warmup)
    stats = run_lightning(cfg, iters, warmup, accelerator, extra=(inter,))
    return inter.pairs(), stats


class Settings(Protocol):
    """How to time: `gan.bench`'s options (gan.perf.bench.BenchOptions) have these."""

    timing: str  # interleaved, blocks or span
    iters: int
    warmup: int
    repeats: int
    accelerator: str


def measure(
    cfg: DictConfig, images: torch.Tensor, args: Settings, device: torch.device
) -> dict[str, Any]:
    """Seconds per iteration of (a) and (b), their ratio, FLOPs and peak memory."""
    if args.timing == "interleaved":
        alone = run_plain(cfg, images, 2, 1, device)  # (b)'s own peak memory, and the FLOPs
        reps = [
            run_interleaved(cfg, images, args.iters, args.warmup, args.accelerator, device)
            for _ in range(args.repeats)
        ]
        pairs = [pair for rep, _ in reps for pair in rep]
        ours = median_run([stats for _, stats in reps])  # for its peak memory, which here
        # includes the plain loop's networks (small beside the process's own)
        return {
            "plain_s": statistics.median(b for b, _ in pairs),
            "ours_s": statistics.median(a for _, a in pairs),
            "ratio": statistics.median(b / a for b, a in pairs),
            "ratios": [statistics.median(b / a for b, a in rep) for rep, _ in reps],
            "flops": alone["flops_per_iter"],
            "plain": alone,
            "ours": ours,
        }
    span = args.timing == "span"
    runs = []  # ((b), (a)) per repeat; the order alternates, so neither always runs second
    for r in range(args.repeats):
        if r % 2 == 0:
            plain = run_plain(cfg, images, args.iters, args.warmup, device, span)
            ours = run_lightning(cfg, args.iters, args.warmup, args.accelerator, span)
        else:
            ours = run_lightning(cfg, args.iters, args.warmup, args.accelerator, span)
            plain = run_plain(cfg, images, args.iters, args.warmup, device, span)
        runs.append((plain, ours))
    b, a = median_run([r[0] for r in runs]), median_run([r[1] for r in runs])
    # Each (a) ran right beside its (b): the median of the paired ratios cancels slow drifts.
    ratios = [rb["s_per_iter"] / ra["s_per_iter"] for rb, ra in runs]
    return {
        "plain_s": b["s_per_iter"],
        "ours_s": a["s_per_iter"],
        "ratio": statistics.median(ratios),
        "ratios": ratios,
        "flops": b["flops_per_iter"],
        "plain": b,
        "ours": a,
    }


class Profile(L.Callback):
    """torch.profiler over `iters` of (a)'s iterations after `warmup`: where the time goes."""

    def __init__(self, warmup: int, iters: int, device: torch.device) -> None:
        activities = [ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(ProfilerActivity.CUDA)
        self.prof = torch.profiler.profile(activities=activities)
        self.warmup, self.iters, self.device = warmup, iters, device
        self.seen, self.t0, self.wall = 0, 0.0, 0.0

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self.seen == self.warmup:
            sync(self.device)
            self.prof.start()
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.seen += 1
        if self.seen == self.warmup + self.iters:
            sync(self.device)
            self.wall = time.perf_counter() - self.t0
            self.prof.stop()

    def report(self, out: Path, name: str, overrides: list[str]) -> dict[str, float]:
        """Write `profile_<name>.md` (the top ops) and `trace_<name>.json`; return a summary.

        On a GPU, the ops are sorted by their own GPU time, and the summary says how busy
        the GPU was: kernel time over wall time. Well below 1, the step is bound by Python
        and kernel launches, not by arithmetic.
        """
        iters, warmup = self.iters, self.warmup

        events = self.prof.key_averages()
        gpu = self.device.type == "cuda"
        key = "self_device_time_total" if gpu else "self_cpu_time_total"
        out.mkdir(parents=True, exist_ok=True)
        self.prof.export_chrome_trace(str(out / f"trace_{name}.json"))
        ms = self.wall / iters * 1e3
        summary = {"profiled_iters": iters, "wall_ms_per_iter": ms}
        lines = [
            f"# Where the time goes: {name}",
            "",
            f"torch.profiler over {iters} iterations of our step (after {warmup} warm-ups), "
            f"overrides: {' '.join(overrides) or 'none'}. Wall time "
            f"{ms:.2f} ms per iteration (the profiler's own overhead included).",
        ]
        if gpu:
            busy = sum(e.self_device_time_total for e in events) / 1e3 / iters
            summary |= {"gpu_busy_ms_per_iter": busy, "gpu_busy_share": busy / ms}
            lines.append(
                f"GPU kernels ran {busy:.2f} ms per iteration: the GPU was busy "
                f"{100 * busy / ms:.0f}% of the time."
            )
        lines += [
            "",
            f"Top ops by {key}:",
            "",
            "```",
            events.table(sort_by=key, row_limit=25),
            "```",
            f"Open `trace_{name}.json` in chrome://tracing or https://ui.perfetto.dev.",
        ]
        (out / f"profile_{name}.md").write_text("\n".join(lines) + "\n")
        return summary
