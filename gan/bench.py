"""Benchmark: our full Lightning training step against a plain PyTorch loop, in one process.

    python -m gan.bench --quick                      # dcgan at batch 128, a few minutes on 2 cores
    python -m gan.bench                              # every architecture at batch 64, 128, 256
    python -m gan.bench --models dcgan mlp --batch-sizes 128 --accelerator gpu

For each architecture and batch size, one after the other:
  (a) `trainer.fit` of our module with our DataModule and the default callbacks (the
      progress bar included; `trainer.enable_progress_bar=false` leaves it out);
  (b) the floor: a plain loop with the same networks, losses, optimizers and D:G ratio,
      fed from a float tensor already in memory.
It prints images/s (real images consumed per second, `batch_size * d_steps` per
iteration) for each, the ratio (a)/(b), peak RSS (and peak GPU memory), the FLOPs of one
iteration (torch.utils.flop_counter) and their share of this machine's matmul peak,
measured in the same run. Warm-ups first, then several timed repeats of (b) then (a):
images/s are medians. How (a) and (b) are interleaved (`--timing`):
  interleaved (the default on a CPU): one (b) iteration right after each (a) iteration, in
      the same fit; the ratio is the median over all pairs. A shared machine's drifts hit
      both sides of a pair alike: pairs seconds apart are far steadier than whole runs.
  blocks: whole runs of (a) and of (b), each iteration synced and timed, the order
      alternating per repeat; the ratio is the median of the repeats' ratios.
  span (the default on a GPU): as blocks, but synced only at the ends of the timed
      iterations, so the GPU runs ahead of Python as it does in training.
Results go to `bench/results.json` and `bench/results.md` (or `--out`). `--profile N` adds
torch.profiler's view of N iterations of (a): `profile_<model>_<batch>.md` (the top ops;
on a GPU, how busy the GPU was) and a Chrome trace.

Data: the real MNIST test split from `--data-root` (default `../shared/mnist`), else
random uint8 images of the same shape.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict
from torch.profiler import ProfilerActivity
from torch.utils.flop_counter import FlopCounterMode

from gan.config import register, to_dict
from gan.losses import LOSSES, make_targets
from gan.module import GAN, build_optimizer, use_fused
from gan.train import MODULE_GROUPS

CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_cfg(
    model: str, batch_size: int, root: str | None, out: str, extra: list[str]
) -> DictConfig:
    register()
    data = [f"data.root={root}", "data.split=test", "data.download=false"] if root else []
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"model={model}",
                f"data.batch_size={batch_size}",
                "logger=csv",
                *data,
                *extra,
            ],
        )
    with open_dict(cfg):
        cfg.paths.output_dir = out
    return cfg


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


def run_lightning(
    cfg: DictConfig,
    iters: int,
    warmup: int,
    accelerator: str,
    span: bool = False,
    extra: tuple[L.Callback, ...] = (),
) -> dict[str, float]:
    """(a): our module, DataModule and default callbacks through trainer.fit."""
    L.seed_everything(cfg.seed, workers=True)
    dm = instantiate(cfg.data)
    module = GAN(**{k: to_dict(cfg[k]) for k in MODULE_GROUPS})
    timer = Timer(warmup, iters, span)
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c]
    # The progress bar is one of the defaults, and it is timed too (it reads the logged
    # losses every iteration); trainer.enable_progress_bar=false leaves it out.
    bar = cfg.trainer.get("enable_progress_bar", True)
    callbacks = [c for c in callbacks if bar or not isinstance(c, L.pytorch.callbacks.ProgressBar)]
    trainer = instantiate(
        cfg.trainer,
        accelerator=accelerator,
        devices=1,
        callbacks=[*callbacks, timer, *extra],
        logger=[instantiate(c) for c in cfg.logger.values() if c],
        max_epochs=-1,
        max_steps=(warmup + iters + 1) * (cfg.step_ratio.d_steps + cfg.step_ratio.g_steps),
        enable_progress_bar=bar,
        enable_model_summary=False,
    )
    reset_peaks()
    trainer.fit(module, datamodule=dm)
    return {"s_per_iter": timer.s_per_iter(), "peak_rss_mb": peak_rss_mb(), **_gpu_peak()}


def _gpu_peak() -> dict[str, float]:
    if not torch.cuda.is_available():
        return {}
    return {"peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20}


def plain_update(
    opt: torch.optim.Optimizer, loss: torch.Tensor, cfg: DictConfig, scaler: torch.amp.GradScaler
) -> None:
    """backward, clip and step, as the module's update does (the scaler is off but for 16-mixed)."""
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    c = cfg.optimizer
    if c.clip_value is not None or c.clip_norm is not None:
        scaler.unscale_(opt)
        params = [p for g in opt.param_groups for p in g["params"]]
        if c.clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, c.clip_value)
        if c.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, c.clip_norm)
    scaler.step(opt)
    scaler.update()


def plain_iteration(
    g: torch.nn.Module,
    d: torch.nn.Module,
    opt_g: Any,
    opt_d: Any,
    real: torch.Tensor,
    cfg: DictConfig,
    z_dim: int,
    scaler: torch.amp.GradScaler,
) -> None:
    """One GAN iteration in plain PyTorch: d_steps D updates, then g_steps G updates."""
    d_loss_fn, g_loss_fn = LOSSES[cfg.loss.name]
    b = real.size(0) // cfg.step_ratio.d_steps
    kept = None
    for chunk in real.split(b):
        z = torch.randn(b, z_dim, device=real.device)
        if cfg.perf.reuse_fake:  # keep G's graph for the G update, as the module does
            kept = g(z)
            fake = kept.detach()
        else:
            with torch.no_grad():
                fake = g(z)
        targets = make_targets(cfg.label_smoothing, b, real.device)
        plain_update(opt_d, d_loss_fn(d(chunk), d(fake), targets), cfg, scaler)
    d.requires_grad_(False)  # no D weight gradients in G's step: a floor, not a naive loop
    for j in range(cfg.step_ratio.g_steps):
        fake = kept if j == 0 and kept is not None else g(torch.randn(b, z_dim, device=real.device))
        plain_update(opt_g, g_loss_fn(d(fake)), cfg, scaler)
    d.requires_grad_(True)


class PlainLoop:
    """(b): the floor. Same nets, losses, optimizers and ratio; data already a float tensor."""

    def __init__(self, cfg: DictConfig, images: torch.Tensor, device: torch.device) -> None:
        torch.manual_seed(cfg.seed)
        self.cfg, self.device = cfg, device
        g = instantiate(cfg.model.generator).to(device)
        d = instantiate(cfg.model.discriminator).to(device)
        c = cfg.optimizer
        dtype = compute_dtype(cfg)
        fused = use_fused(c, cfg.trainer.precision)  # as the module decides
        self.opt_g = build_optimizer(g.parameters(), c.g, c.g.lr or c.lr, fused)
        self.opt_d = build_optimizer(d.parameters(), c.d, c.d.lr or c.lr * c.d_lr_scale, fused)
        # 16-mixed's loss scaling
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.per = cfg.data.batch_size * cfg.step_ratio.d_steps
        self.data = images.to(device)  # (N, 1, S, S) float
        if cfg.perf.channels_last:  # the same options as the module's, for a fair floor
            g, d = g.to(memory_format=torch.channels_last), d.to(memory_format=torch.channels_last)
            self.data = self.data.contiguous(memory_format=torch.channels_last)
        self.g, self.d = g, d
        mode = cfg.perf.compile_mode
        self.gc, self.dc = (
            (torch.compile(g, mode=mode), torch.compile(d, mode=mode))
            if cfg.perf.compile
            else (g, d)
        )
        self.amp = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
        self.n, self.i = self.data.size(0) // self.per, 0

    def step(self) -> None:
        """One iteration on the next slice of the data."""
        k = self.i % self.n
        self.i += 1
        with self.amp:
            plain_iteration(
                self.gc,
                self.dc,
                self.opt_g,
                self.opt_d,
                self.data[k * self.per : (k + 1) * self.per],
                self.cfg,
                self.cfg.noise.dim,
                self.scaler,
            )

    def flops_per_iter(self) -> float:
        flops = FlopCounterMode(display=False)
        with flops:
            plain_iteration(
                self.g,
                self.d,
                self.opt_g,
                self.opt_d,
                self.data[: self.per],
                self.cfg,
                self.cfg.noise.dim,
                self.scaler,
            )
        return float(flops.get_total_flops())


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
        **_gpu_peak(),
    }


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


def measure(
    cfg: DictConfig, images: torch.Tensor, args: argparse.Namespace, device: torch.device
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


def profile(
    cfg: DictConfig,
    iters: int,
    warmup: int,
    accelerator: str,
    device: torch.device,
    out: Path,
    name: str,
    overrides: list[str],
) -> dict[str, float]:
    """Profile (a) and write `profile_<name>.md` (the top ops) and `trace_<name>.json`.

    On a GPU, the ops are sorted by their own GPU time, and the summary says how busy
    the GPU was: kernel time over wall time. Well below 1, the step is bound by Python and
    kernel launches, not by arithmetic.
    """
    prof = Profile(warmup, iters, device)
    run_lightning(cfg, iters, warmup, accelerator, extra=(prof,))
    events = prof.prof.key_averages()
    gpu = device.type == "cuda"
    key = "self_device_time_total" if gpu else "self_cpu_time_total"
    out.mkdir(parents=True, exist_ok=True)
    prof.prof.export_chrome_trace(str(out / f"trace_{name}.json"))
    ms = prof.wall / iters * 1e3
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


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def compute_dtype(cfg: DictConfig) -> torch.dtype:
    """The dtype that matmuls and convolutions run in under `trainer.precision`."""
    precision = str(cfg.trainer.precision)
    if precision.startswith("bf16"):
        return torch.bfloat16
    return torch.float16 if precision.startswith("16") else torch.float32


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


def load_images(cfg: DictConfig) -> torch.Tensor:
    """The training images as the model sees them: float, scaled and sized, (N, 1, S, S)."""
    dm = instantiate(cfg.data)
    dm.setup("fit")
    return dm.to_model_range(dm._train.images)


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


def epoch_overhead(
    root: str | None, out: str, extra: list[str], epochs: int = 4
) -> dict[str, float]:
    """What the default metrics, images and checkpoints add to a dcgan epoch, against none.

    Both runs go through the real entry (`gan.train.train`) for `epochs` epochs. The
    per-epoch cost is the median epoch after the first (which pays the warm-up); the
    one-off cost (classifier load, the real images' features, the GIF at the end) is
    what is left of the whole run's difference.
    """
    from gan.train import train  # the real entry, everything included

    res: dict[str, float] = {}
    for name, over in (
        ("bare", ["metrics.enabled=false", "callbacks=none", "logger=none"]),
        ("defaults", []),
    ):
        run = os.path.join(out, name)
        cfg = compose_cfg(
            "dcgan",
            128,
            root,
            run,
            [f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false", *over, *extra],
        )
        marks = os.path.join(out, f"{name}_marks.json")
        with open_dict(cfg):
            cfg.callbacks["epoch_timer"] = {"_target_": "gan.bench.EpochTimer", "path": marks}
        t0 = time.perf_counter()
        train(cfg)
        res[f"{name}_run_s"] = time.perf_counter() - t0
        m = json.loads(Path(marks).read_text())
        res[f"{name}_epoch_s"] = statistics.median(b - a for a, b in zip(m[1:], m[2:]))
    res["epochs"] = epochs
    res["overhead"] = res["defaults_epoch_s"] / res["bare_epoch_s"] - 1
    res["one_off_s"] = (
        res["defaults_run_s"]
        - res["bare_run_s"]
        - epochs * (res["defaults_epoch_s"] - res["bare_epoch_s"])
    )
    return res


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["mlp", "dcgan", "paddle", "upsample", "dcgan64"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 128, 256])
    p.add_argument("--iters", type=int, default=30, help="timed iterations per measurement")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument(
        "--repeats", type=int, default=3, help="runs of (a) and (b); medians are reported"
    )
    p.add_argument("--quick", action="store_true", help="dcgan at batch 128 only")
    p.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    p.add_argument(
        "--timing",
        default="auto",
        choices=["auto", "interleaved", "blocks", "span"],
        help="interleaved (auto on a CPU): one (b) iteration after each (a) iteration, each "
        "pair timed side by side; blocks: whole runs of (a) and of (b), each iteration timed; "
        "span (auto on a GPU): whole runs, synced only at their ends, so a GPU runs ahead as in "
        "training",
    )
    p.add_argument(
        "--epoch-overhead",
        action="store_true",
        help="also time dcgan epochs with the default metrics/callbacks against none",
    )
    p.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also run torch.profiler over N iterations of (a): profile_*.md, trace_*.json",
    )
    p.add_argument("--data-root", default=str(CONF.parents[1] / "shared" / "mnist"))
    p.add_argument("--out", default="bench")
    p.add_argument("overrides", nargs="*", help="Hydra overrides for both (a) and (b)")
    args = p.parse_args(argv)
    if args.quick:
        args.models, args.batch_sizes, args.iters, args.repeats = ["dcgan"], [128], 20, 5
    device = torch.device("cuda" if args.accelerator == "gpu" else "cpu")
    if args.timing == "auto":  # what the tables then say was done
        args.timing = "span" if device.type == "cuda" else "interleaved"
    root = args.data_root if Path(args.data_root, "MNIST", "raw").exists() else None
    peak, dtype = 0.0, torch.float32  # measured once, in the first configuration's dtype
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            for bs in args.batch_sizes:
                cfg = compose_cfg(
                    model, bs, root, os.path.join(tmp, f"{model}_{bs}"), args.overrides
                )
                images = load_images(cfg)
                if not peak:
                    dtype = compute_dtype(cfg)
                    peak = matmul_peak(device, dtype)
                per = bs * cfg.step_ratio.d_steps
                m = measure(cfg, images, args, device)
                a, b = m["ours"], m["plain"]
                row = {
                    "model": model,
                    "batch_size": bs,
                    "ours_img_s": per / m["ours_s"],
                    "plain_img_s": per / m["plain_s"],
                    "ratio": m["ratio"],
                    "ratios": m["ratios"],
                    "gflop_per_iter": m["flops"] / 1e9,
                    "mflop_per_image": m["flops"] / per / 1e6,
                    "plain_share_of_peak": m["flops"] / m["plain_s"] / peak,
                    "ours_peak_rss_mb": a["peak_rss_mb"],
                    "plain_peak_rss_mb": b["peak_rss_mb"],
                    **(
                        {
                            "ours_peak_gpu_mb": a["peak_gpu_mb"],
                            "plain_peak_gpu_mb": b["peak_gpu_mb"],
                        }
                        if "peak_gpu_mb" in a
                        else {}
                    ),
                }
                if args.profile:
                    row["profile"] = profile(
                        cfg,
                        args.profile,
                        args.warmup,
                        args.accelerator,
                        device,
                        Path(args.out),
                        f"{model}_{bs}",
                        args.overrides,
                    )
                rows.append(row)
                print(
                    f"{model:9s} B={bs:<4d} ours {row['ours_img_s']:8.0f} img/s | plain "
                    f"{row['plain_img_s']:8.0f} img/s | ratio {row['ratio']:.3f} | "
                    f"{row['mflop_per_image']:.1f} MFLOP/img, {100 * row['plain_share_of_peak']:.0f}% "
                    f"of matmul peak",
                    flush=True,
                )
        overhead = (
            epoch_overhead(root, os.path.join(tmp, "epoch"), args.overrides)
            if args.epoch_overhead
            else None
        )
    write(rows, peak, dtype, device, Path(args.out), args, overhead)


def write(
    rows: list[dict[str, Any]],
    peak: float,
    dtype: torch.dtype,
    device: torch.device,
    out: Path,
    args: argparse.Namespace,
    overhead: dict[str, float] | None = None,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    machine = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"{torch.get_num_threads()} torch threads"
    )
    meta = {
        "machine": machine,
        "torch": torch.__version__,
        "matmul_peak_gflops": peak / 1e9,
        "matmul_peak_dtype": str(dtype).removeprefix("torch."),
        "iters": args.iters,
        "warmup": args.warmup,
        "repeats": args.repeats,
        "timing": args.timing,
        "overrides": args.overrides,
    }
    (out / "results.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "epoch_overhead": overhead}, indent=2) + "\n"
    )
    lines = [
        f"Machine: {machine}; torch {torch.__version__}; "
        f"{str(dtype).removeprefix('torch.')} matmul peak "
        f"{peak / 1e9:.0f} GFLOP/s (measured in this run). Timing: {args.timing}, "
        f"{args.repeats} repeats of {args.iters} iterations. Overrides: "
        f"{' '.join(args.overrides) or 'none'}.",
        "",
        "| model | batch | ours img/s | plain img/s | ours / plain | each pair's ratio | MFLOP/image | plain % of peak | peak RSS ours / plain (MB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {r['ours_img_s']:.0f} | {r['plain_img_s']:.0f} | "
            f"{r['ratio']:.3f} | {' '.join(f'{x:.2f}' for x in r['ratios'])} | {r['mflop_per_image']:.1f} | {100 * r['plain_share_of_peak']:.0f}% | "
            f"{r['ours_peak_rss_mb']:.0f} / {r['plain_peak_rss_mb']:.0f} |"
        )
    if overhead:
        lines += [
            "",
            f"A dcgan epoch (batch 128, median of epochs 2 to {overhead['epochs']:.0f}) with "
            f"the default metrics, image callbacks and checkpoints: "
            f"{overhead['defaults_epoch_s']:.2f} s; bare: {overhead['bare_epoch_s']:.2f} s "
            f"(+{100 * overhead['overhead']:.1f}% per epoch). Once per run, the defaults "
            f"add {overhead['one_off_s']:.1f} s (classifier load, the real images' "
            f"features, the GIF).",
        ]
    for r in rows:
        if "profile" in r:
            lines += [
                "",
                f"Where the time goes in {r['model']} at batch {r['batch_size']}: "
                f"`profile_{r['model']}_{r['batch_size']}.md` (torch.profiler).",
            ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")


if __name__ == "__main__":
    main()
