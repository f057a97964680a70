"""Benchmark: our full Lightning training step against a plain PyTorch loop, in one process.

    python -m gan.bench --quick                        # dcgan at batch 128, a few minutes on 2 cores
    python -m gan.bench                                # every architecture at batch 64, 128, 256
    python -m gan.bench models=[dcgan,mlp] batch_sizes=[128] accelerator=gpu
    python -m gan.bench --quick out=bench/results/cpu_bf16 trainer.precision=bf16-mixed
    python -m gan.bench models=[dcgan] batch_sizes=[128] iters=10 warmup=3 repeats=1 profile=5

Options (key=value, Hydra style; lists as [a,b]):
    models          the architectures, names in conf/model/ ([mlp,dcgan,paddle,upsample,dcgan64])
    batch_sizes     the batch sizes, each model at each ([64,128,256])
    iters           timed iterations per measurement (30)
    warmup          iterations before the timed ones (5)
    repeats         runs of (a) and (b); images/s are medians (3)
    quick           true: dcgan at batch 128, 5 repeats of 20 iterations; options given
                    beside it win (false). `--quick` is short for quick=true
    accelerator     cpu or gpu (cpu)
    timing          auto, interleaved, blocks or span; auto: interleaved on a CPU, span on
                    a GPU (see below)
    epoch_overhead  true: also time dcgan epochs (at the first of batch_sizes) with the
                    default metrics, image callbacks and checkpoints against none (false)
    profile         N > 0: also run torch.profiler over N iterations of (a) (0)
    data_root       the MNIST folder (../shared/mnist beside the repository); when it holds
                    no MNIST/raw, random uint8 images of the same shape
    out             the results' folder (a new outputs/bench/<date>_<time>)

Any other key=value is a Hydra override of conf/train.yaml for both (a) and (b), e.g.
`trainer.precision=bf16-mixed perf.channels_last=true` (not `model=` or `data.batch_size=`:
`models=` and `batch_sizes=` set those). A mistake prints one `error: ...` line and exits 1.

For each architecture and batch size, one after the other:
  (a) `trainer.fit` of our module with our DataModule and the default callbacks (the
      progress bar included; `trainer.enable_progress_bar=false` leaves it out);
  (b) the floor: a plain loop with the same networks, losses, optimizers and D:G ratio,
      fed from a float tensor already in memory.
It prints images/s (real images consumed per second, `batch_size * d_steps` per
iteration) for each, the ratio (a)/(b), peak RSS (and peak GPU memory), the FLOPs of one
iteration (torch.utils.flop_counter) and their share of this machine's matmul peak,
measured in the same run. Warm-ups first, then several timed repeats of (b) then (a):
images/s are medians. How (a) and (b) are interleaved (`timing=`):
  interleaved (the default on a CPU): one (b) iteration right after each (a) iteration, in
      the same fit; the ratio is the median over all pairs. A shared machine's drifts hit
      both sides of a pair alike: pairs seconds apart are far steadier than whole runs.
  blocks: whole runs of (a) and of (b), each iteration synced and timed, the order
      alternating per repeat; the ratio is the median of the repeats' ratios.
  span (the default on a GPU): as blocks, but synced only at the ends of the timed
      iterations, so the GPU runs ahead of Python as it does in training.
Results go to `out`: `results.json` and `results.md`. `profile=N` adds torch.profiler's
view of N iterations of (a): `profile_<model>_<batch>.md` (the top ops; on a GPU, how busy
the GPU was) and a Chrome trace, `trace_<model>_<batch>.json`.
"""

from __future__ import annotations

import difflib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from gan.perf.floor import compute_dtype
from gan.perf.timing import (
    Profile,
    matmul_peak,
    measure,
    run_lightning,
)
from gan.training.config import TrainConfig, register
from gan.training.validate import validate
from gan.utils.errors import GanError
from gan.utils.files import check_writable
from gan.utils.options import command, parse_options

CONF = Path(__file__).resolve().parents[2] / "conf"
MODELS = ["mlp", "dcgan", "paddle", "upsample", "dcgan64"]
TIMINGS = ("auto", "interleaved", "blocks", "span")
ACCELERATORS = ("cpu", "gpu")
EXAMPLE = "python -m gan.bench models=[mlp,dcgan] batch_sizes=[128] iters=10"
QUICK = {"models": ["dcgan"], "batch_sizes": [128], "iters": 20, "repeats": 5}
# Overrides that the options set for each run: the option to write instead.
SET_BY_OPTIONS = {  # overrides that each measurement sets itself, and the option to use
    "model": "models",
    "data.batch_size": "batch_sizes",
    "trainer.accelerator": "accelerator",
    "trainer.devices": "accelerator",
    "trainer.max_steps": "iters",
    "trainer.max_epochs": "iters",
}


@dataclass
class BenchOptions:
    """The options of `python -m gan.bench`; see the module docstring."""

    models: list[str] = field(default_factory=lambda: list(MODELS))
    batch_sizes: list[int] = field(default_factory=lambda: [64, 128, 256])
    iters: int = 30
    warmup: int = 5
    repeats: int = 3
    quick: bool = False
    accelerator: str = "cpu"
    timing: str = "auto"  # auto: interleaved on a CPU, span on a GPU (resolved by parse)
    epoch_overhead: bool = False
    profile: int = 0
    data_root: str = str(CONF.parents[1] / "shared" / "mnist")
    out: str | None = None  # None: a new outputs/bench/<date>_<time> (resolved by parse)


OPTIONS = tuple(f.name for f in fields(BenchOptions))


def hydra_message(err: Exception) -> str:
    """Hydra's compose error in one line: its first line, the options it lists, the cause."""
    lines = [line.strip() for line in str(err).split("Config search path:")[0].splitlines()]
    head, rest = lines[0].rstrip("."), [line for line in lines[1:] if line]
    if rest and rest[0].startswith("Available options"):
        head += f"; {rest[0].rstrip(':')}: {', '.join(rest[1:])}"
    cause = err.__cause__
    if cause is not None and str(cause).strip():
        head += f": {str(cause).strip().splitlines()[0]}"
    return head


def compose_cfg(
    model: str, batch_size: int, root: str | None, out: str, extra: list[str]
) -> DictConfig:
    register()
    data = [f"data.root={root}", "data.split=test", "data.download=false"] if root else []
    overrides = [f"model={model}", f"data.batch_size={batch_size}", "logger=csv", *data, *extra]
    try:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as err:
        given = " ".join(extra) or "none"
        raise GanError(
            f"the overrides ({given}) do not compose with conf/train.yaml: "
            f"{hydra_message(err)}. Fix or drop the override."
        ) from err
    with open_dict(cfg):
        cfg.paths.output_dir = out
    return cfg


def profile(
    cfg: DictConfig,
    opts: BenchOptions,
    overrides: list[str],
    device: torch.device,
    out: Path,
    name: str,
) -> dict[str, float]:
    """torch.profiler over `profile=N` iterations of (a): `profile_<name>.md` and a trace."""
    prof = Profile(opts.warmup, opts.profile, device)
    run_lightning(cfg, opts.profile, opts.warmup, opts.accelerator, extra=(prof,))
    return prof.report(out, name, overrides)


def load_images(cfg: DictConfig) -> torch.Tensor:
    """The training images as the model sees them: float, scaled and sized, (N, 1, S, S)."""
    dm = instantiate(cfg.data)
    dm.setup("fit")
    return dm.to_model_range(dm.train_set.images)


def epoch_overhead(
    root: str | None, out: str, extra: list[str], epochs: int = 4, batch_size: int = 128
) -> dict[str, float]:
    """What the default metrics, images and checkpoints add to a dcgan epoch, against none.

    Both runs go through the real entry (`gan.training.run.train`) for `epochs` epochs. The
    per-epoch cost is the median epoch after the first (which pays the warm-up); the
    one-off cost (classifier load, the real images' features, the GIF at the end) is
    what is left of the whole run's difference.
    """
    from gan.training.run import train  # the real entry, everything included

    res: dict[str, float] = {}
    for name, over in (
        ("bare", ["metrics.enabled=false", "callbacks=none", "logger=none"]),
        ("defaults", []),
    ):
        run = os.path.join(out, name)
        cfg = compose_cfg(
            "dcgan",
            batch_size,
            root,
            run,
            [f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false", *over, *extra],
        )
        marks = os.path.join(out, f"{name}_marks.json")
        with open_dict(cfg):
            cfg.callbacks["epoch_timer"] = {"_target_": "gan.perf.timing.EpochTimer", "path": marks}
        t0 = time.perf_counter()
        train(cfg)
        res[f"{name}_run_s"] = time.perf_counter() - t0
        m = json.loads(Path(marks).read_text())
        res[f"{name}_epoch_s"] = statistics.median(b - a for a, b in zip(m[1:], m[2:]))
    res["epochs"] = epochs
    res["batch_size"] = batch_size
    res["overhead"] = res["defaults_epoch_s"] / res["bare_epoch_s"] - 1
    res["one_off_s"] = (
        res["defaults_run_s"]
        - res["bare_run_s"]
        - epochs * (res["defaults_epoch_s"] - res["bare_epoch_s"])
    )
    return res


def flag_message(args: Sequence[str], i: int) -> str:
    """The error for a `--flag` (argparse's style): the key=value it stands for."""
    flag = args[i]
    name = flag.lstrip("-").partition("=")[0].replace("-", "_")
    if name not in OPTIONS:
        return (
            f"{flag} is not an option: gan.bench takes key=value options, e.g. `{EXAMPLE}` "
            f"(options: {', '.join(OPTIONS)}; `python -m gan.bench --help` says more)."
        )
    values = [flag.partition("=")[2]] if "=" in flag else []
    for arg in args[i + 1 :]:
        if arg.startswith("-") or "=" in arg:
            break
        values.append(arg)
    kind = BenchOptions.__dataclass_fields__[name].type
    if "list" in str(kind):
        form = f"{name}=[{','.join(values) or '...'}]"
    elif "bool" in str(kind):
        form = f"{name}=true"
    else:
        form = f"{name}={values[0] if values else '...'}"
    return f"{flag} is not an option: gan.bench takes key=value options; write {form}."


# Top-level keys of conf/train.yaml and its config groups: a dotless override names one.
CONFIG_KEYS = {f.name for f in fields(TrainConfig)} | {"hydra"}
CONFIG_KEYS |= {d.name for d in CONF.iterdir() if d.is_dir()}


def check_override(arg: str) -> None:
    """GanError for an override that an option sets, or a near miss of an option's name."""
    key = arg.partition("=")[0].lstrip("+~")  # `++data.batch_size=64` sets it too
    if key in SET_BY_OPTIONS:
        option, value = SET_BY_OPTIONS[key], arg.partition("=")[2]
        shown = f"[{value}]" if option in ("models", "batch_sizes") else "..."
        raise GanError(f"{arg} is set for each run by the option {option}: write {option}={shown}.")
    if arg.startswith(("+", "~")):
        return  # adds or deletes a key of the config: Hydra's to check
    if "." in key or key in CONFIG_KEYS:
        return
    close = difflib.get_close_matches(key, OPTIONS, n=1)
    if close:
        raise GanError(
            f"unknown option {key!r}: did you mean {close[0]}=? The options are "
            f"{', '.join(OPTIONS)}; other keys are Hydra overrides of conf/train.yaml."
        )


def parse(argv: Sequence[str]) -> tuple[BenchOptions, list[str]]:
    """The command line -> the options (checked, defaults resolved) and the Hydra overrides.

    A key that is an option is an option; `--quick` is quick=true; any other key=value
    (or `~key`) is an override for both (a) and (b). GanError on a mistake.
    """
    given, overrides = [], []
    for i, arg in enumerate(argv):
        key = arg.partition("=")[0]
        if arg == "--quick":
            given.append("quick=true")
        elif arg.startswith("-"):
            raise GanError(flag_message(argv, i))
        elif key in OPTIONS or not key or ("=" not in arg and not arg.startswith("~")):
            given.append(arg)  # parse_options names what is wrong with a bare word
        else:
            check_override(arg)
            overrides.append(arg)
    cfg, keys = parse_options(given, BenchOptions, EXAMPLE)
    if cfg.quick:
        for key, value in QUICK.items():
            if key not in keys:
                cfg[key] = value
    opts: BenchOptions = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    check(opts)
    if opts.timing == "auto":  # what the tables then say was done
        opts.timing = "span" if opts.accelerator == "gpu" else "interleaved"
    if not opts.out:
        opts.out = f"outputs/bench/{time.strftime('%Y-%m-%d_%H-%M-%S')}"
    check_writable(opts.out, "out")  # before minutes of measuring, not after
    return opts, overrides


def check(opts: BenchOptions) -> None:
    """GanError for a value the types let through: one line naming the fix."""
    known = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))
    if not opts.models:
        raise GanError(f"models=[] is empty: give one or more, e.g. models=[{known[0]}].")
    unknown = [m for m in opts.models if m not in known]
    if unknown:
        raise GanError(
            f"models=[{','.join(opts.models)}]: no model {', '.join(unknown)} in conf/model/; "
            f"the models are {', '.join(known)}."
        )
    if not opts.batch_sizes or min(opts.batch_sizes) < 1:
        raise GanError(
            f"batch_sizes={opts.batch_sizes} is invalid: give sizes >= 1, e.g. batch_sizes=[128]."
        )
    for key, low in (("iters", 1), ("warmup", 0), ("repeats", 1), ("profile", 0)):
        if getattr(opts, key) < low:
            raise GanError(f"{key}={getattr(opts, key)} is invalid: it must be >= {low}.")
    if opts.accelerator not in ACCELERATORS:
        raise GanError(
            f"accelerator={opts.accelerator!r} is unknown: use one of {', '.join(ACCELERATORS)}."
        )
    if opts.accelerator == "gpu" and not torch.cuda.is_available():
        raise GanError(
            "accelerator=gpu but this machine has no usable GPU (torch.cuda.is_available() "
            "is False): use accelerator=cpu."
        )
    if opts.timing not in TIMINGS:
        raise GanError(f"timing={opts.timing!r} is unknown: use one of {', '.join(TIMINGS)}.")


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: key=value options and Hydra overrides; GanError -> `error: ...`."""

    def run(args: list[str]) -> None:
        opts, overrides = parse(args)
        benchmark(opts, overrides)

    command(argv, __doc__, run)


def benchmark(opts: BenchOptions, overrides: list[str]) -> None:
    """Measure every model at every batch size; print and write the tables into `opts.out`."""
    device = torch.device("cuda" if opts.accelerator == "gpu" else "cpu")
    root = opts.data_root if Path(opts.data_root, "MNIST", "raw").exists() else None
    out = Path(str(opts.out))
    peak, dtype = 0.0, torch.float32  # measured once, in the first configuration's dtype
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in opts.models:  # every override checked before anything is measured
            for bs in opts.batch_sizes:  # with each batch size (stabilize.pack must divide it)
                validate(compose_cfg(model, bs, root, tmp, overrides))
        for model in opts.models:
            for bs in opts.batch_sizes:
                cfg = compose_cfg(model, bs, root, os.path.join(tmp, f"{model}_{bs}"), overrides)
                images = load_images(cfg)
                if not peak:
                    dtype = compute_dtype(cfg)
                    peak = matmul_peak(device, dtype)
                per = bs * cfg.step_ratio.d_steps
                m = measure(cfg, images, opts, device)
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
                    **{
                        f"{k}_peak_gpu_mb": v["peak_gpu_mb"]
                        for k, v in (("ours", a), ("plain", b))
                        if "peak_gpu_mb" in v
                    },
                }
                if opts.profile:
                    name = f"{model}_{bs}"
                    row["profile"] = profile(cfg, opts, overrides, device, out, name)
                rows.append(row)
                print(
                    f"{model:9s} B={bs:<4d} ours {row['ours_img_s']:8.0f} img/s | plain "
                    f"{row['plain_img_s']:8.0f} img/s | ratio {row['ratio']:.3f} | "
                    f"{row['mflop_per_image']:.1f} MFLOP/img, {100 * row['plain_share_of_peak']:.0f}% "
                    f"of matmul peak",
                    flush=True,
                )
        overhead = (
            epoch_overhead(
                root, os.path.join(tmp, "epoch"), overrides, batch_size=opts.batch_sizes[0]
            )
            if opts.epoch_overhead
            else None
        )
    write(rows, peak, dtype, device, out, opts, overrides, overhead)


def write(
    rows: list[dict[str, Any]],
    peak: float,
    dtype: torch.dtype,
    device: torch.device,
    out: Path,
    opts: BenchOptions,
    overrides: list[str],
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
        "iters": opts.iters,
        "warmup": opts.warmup,
        "repeats": opts.repeats,
        "timing": opts.timing,
        "overrides": overrides,
    }
    (out / "results.json").write_text(
        json.dumps({"meta": meta, "rows": rows, "epoch_overhead": overhead}, indent=2) + "\n"
    )
    lines = [
        f"Machine: {machine}; torch {torch.__version__}; "
        f"{str(dtype).removeprefix('torch.')} matmul peak "
        f"{peak / 1e9:.0f} GFLOP/s (measured in this run). Timing: {opts.timing}, "
        f"{opts.repeats} repeats of {opts.iters} iterations. Overrides: "
        f"{' '.join(overrides) or 'none'}.",
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
            f"A dcgan epoch (batch {overhead['batch_size']:.0f}, median of epochs 2 to "
            f"{overhead['epochs']:.0f}) with "
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
