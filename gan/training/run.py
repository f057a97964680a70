"""A training run, start to end: what `python -m gan.train` (gan/train.py) calls.

`run(cfg)` checks the composed config, resumes from a run folder alone when asked
(gan.training.resume), trains (`train`), writes result.json, prints the end-of-run table,
and returns the metric that sweeps optimize. In a sweep a failed or diverged job is
recorded and ranked last.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf, open_dict

from gan.training.build import build
from gan.training.checkpoints import (
    LIGHTNING_NAMES,
    check_resume_checkpoint,
    is_registry,
    resolve_checkpoint,
    resolve_lightning_name,
)
from gan.training.config import register, to_dict
from gan.training.console import quiet, summary
from gan.training.faults import FRESH_RUN_DIRS, Interrupted, check_run_folder, resumes_in
from gan.training.loggers import finish_loggers
from gan.training.resume import resume_command, resume_config, typed_overrides, undo_writes
from gan.training.validate import validate
from gan.utils.errors import GanError
from gan.utils.files import atomic_write, check_writable, run_files

log = logging.getLogger("gan.train")
register()


def check_accelerator(accelerator: str) -> None:
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise GanError(
            f"trainer.accelerator={accelerator} but this machine has no usable GPU "
            f"(torch.cuda.is_available() is False). Use trainer.accelerator=cpu, or "
            f"trainer.accelerator=auto to take a GPU only when there is one."
        )


def resume_into_run_folder(cfg: DictConfig) -> None:
    """`ckpt_path=<run folder>` or `<run>/checkpoints/*.ckpt`: continue in that run folder."""
    if not cfg.ckpt_path or cfg.ckpt_path in LIGHTNING_NAMES:
        return
    path = resolve_checkpoint(cfg.ckpt_path)  # checked by check_resume_checkpoint already
    run = path.parent.parent
    with open_dict(cfg):
        cfg.ckpt_path = str(path)
        if path.parent.name == "checkpoints" and (run / "config.yaml").is_file():
            cfg.paths.output_dir = str(run)  # the same folder: checkpoints, images, logs, W&B run
            log.info("resuming %s into its run folder %s", path, run)


def checkpoint_folder(cfg: DictConfig) -> Path:
    """Where the run's checkpoints go: ModelCheckpoint's folder, else `<run>/checkpoints`."""
    dirpath = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath", default=None)
    return Path(dirpath) if dirpath else Path(cfg.paths.output_dir) / "checkpoints"


def check(cfg: DictConfig) -> None:
    """Every check of a run's inputs, before anything is written; GanError names the fix.

    `ckpt_path=last|best|hpc` becomes the file Lightning would load (see
    gan.utils.files.resolve_lightning_name), checked like any other path.
    """
    validate(cfg)
    if cfg.verbose:
        with open_dict(cfg):
            cfg.trainer.enable_model_summary = True  # the layer table, on request
    check_accelerator(cfg.trainer.accelerator)
    check_writable(cfg.paths.output_dir)
    name = cfg.ckpt_path
    if name and (name in LIGHTNING_NAMES or is_registry(name)):
        path = resolve_lightning_name(name, checkpoint_folder(cfg), Path(cfg.paths.output_dir))
        log.info("ckpt_path=%s: %s", name, path)
        with open_dict(cfg):
            cfg.ckpt_path = str(path)
    if cfg.ckpt_path:  # before the run folder moves to the checkpoint's: a bad file touches nothing
        check_resume_checkpoint(
            cfg.ckpt_path,
            to_dict(cfg.model),
            cfg.ema.enabled,
            to_dict(cfg.condition),
            to_dict(cfg.stabilize),
        )


class Started(L.Callback):
    """Notes in `flags["fit"]` that training began (from then on a failure is the run's),
    and then calls `then` (a resumed run's config.yaml is rewritten only once it trains)."""

    def __init__(self, flags: dict[str, bool], then: Callable[[], object] | None = None) -> None:
        self.flags, self.then = flags, then

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.flags["fit"] = True
        if self.then is not None and trainer.is_global_zero:
            self.then()


def train(
    cfg: DictConfig,
    final: dict[str, float] | None = None,
    checked: bool = False,
    started: dict[str, bool] | None = None,
) -> float | None:
    """Fit one run; return the value of `cfg.optimized_metric` (None if never logged).

    `final`, when given, receives the last value of every scalar `val/*` score, so that
    result.json holds them whatever the logger (gan.tools.report reads them from there).
    `checked`: `check(cfg)` has run already. `started["fit"]` is set once training begins.
    """
    if not checked:
        check(cfg)
    resume_into_run_folder(cfg)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)

    def save_config() -> None:  # the resolved config: for people, and for a resume
        atomic_write(out / "config.yaml", lambda tmp: OmegaConf.save(cfg, tmp, resolve=True))

    in_place = bool(cfg.ckpt_path) and (out / "config.yaml").is_file()
    if not in_place:
        save_config()

    L.seed_everything(cfg.seed, workers=True)
    flags = started if started is not None else {}
    # The builder finds or trains the scores' classifier now, before DDP starts its ranks.
    run = build(cfg, callbacks=[Started(flags, save_config if in_place else None)])
    for logger in run.loggers:
        logger.log_hyperparams(to_dict(cfg))
    try:
        run.trainer.fit(
            run.module,
            datamodule=run.datamodule,
            ckpt_path=cfg.ckpt_path,
            weights_only=True,  # a checkpoint is data: nothing in it is unpickled as objects
        )
    finally:
        finish_loggers(run.loggers)

    metrics = run.trainer.callback_metrics
    if final is not None:
        final.update(
            {k: float(v) for k, v in metrics.items() if k.startswith("val/") and v.numel() == 1}
        )
        final.update(run.module.floor)  # measured each fit, logged once per run
        if run.module.best_fid is not None:
            final["best/val/fid"], final["best/epoch"] = run.module.best_fid
    value = metrics.get(cfg.optimized_metric)
    if in_sweep():  # a single run prints its folder in the end-of-run table
        log.info("run folder: %s", out)
    return None if value is None else float(value)


def write_result(
    cfg: DictConfig,
    status: str,
    value: float | None,
    seconds: float,
    error: str | None = None,
    final: dict[str, float] | None = None,
) -> None:
    """`<run>/result.json`: how the run ended, for `gan.report` and for people."""
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "status": status,
        "metric": cfg.optimized_metric,
        "value": value,
        "seconds": round(seconds, 2),
        "error": error,
        "final": final or {},  # the last value of each val/* score
    }
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(out / "result.json", lambda tmp: tmp.write_text(text))


def in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def clear_checkpoints(folder: Path) -> None:
    """Remove the `*.ckpt` files in `folder` (an earlier run's, replaced with overwrite=true)."""
    for path in sorted(folder.glob("*.ckpt")) if folder.is_dir() else []:
        if not path.is_dir():
            path.unlink()
            log.warning("overwrite=true: removed the earlier run's %s", path)


def remove_fresh_folder(out: Path) -> None:
    """Remove the run folder of a run that did no work, when this command made it (see
    gan.training.faults.FRESH_RUN_DIRS), and its date folder when that is left empty."""
    out = out.absolute()
    if out not in FRESH_RUN_DIRS or not out.is_dir():
        return
    for handler in logging.getLogger().handlers:  # train.log, closed before its folder goes
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).is_relative_to(
            out
        ):
            handler.close()
            logging.getLogger().removeHandler(handler)
    shutil.rmtree(out, ignore_errors=True)
    if out.parent in FRESH_RUN_DIRS:  # outputs/<date>/, when this command made it too
        with contextlib.suppress(OSError):
            out.parent.rmdir()  # only if empty


def run(cfg: DictConfig) -> float | None:
    """Train; in a sweep, a failed or diverged job is recorded and ranked last, not fatal.

    A folder that holds a run is refused before this run writes to it (gan.training.faults.CheckOutputDir
    refuses it earlier still, before Hydra writes `.hydra/` there; this is the check where
    that callback is off). An input error leaves the result.json of the run that this one
    resumes or replaces as it was.
    """
    quiet(cfg.verbose)
    start = time.perf_counter()
    final: dict[str, float] = {}
    started: dict[str, bool] = {}  # "fit": training began (the run's record may change)
    try:
        if not in_sweep():  # ckpt_path=<run folder>: the run's own config (gan.training.resume)
            cfg = resume_config(cfg, typed_overrides(HydraConfig.get().overrides.task)) or cfg
    except GanError as err:  # refused before any work: nothing stays behind
        undo_writes()
        raise SystemExit(f"error: {err}") from None
    out, checkpoints = Path(cfg.paths.output_dir), checkpoint_folder(cfg)
    held = run_files(out)  # an earlier run's: resumed (ckpt_path) or replaced (overwrite)
    try:
        check_run_folder(out, checkpoints, cfg.ckpt_path, cfg.overwrite)
    except GanError as err:
        if in_sweep():  # its folder is an earlier job's: nothing of it is touched
            log.error("job refused, the sweep goes on: %s", err)
            return float("inf")
        raise SystemExit(f"error: {err}") from None
    try:
        check(cfg)
        if (
            held
            and cfg.overwrite
            and not (cfg.ckpt_path and resumes_in(cfg.ckpt_path, out, checkpoints))
        ):
            clear_checkpoints(checkpoints)
        value = train(cfg, final, checked=True, started=started)
    except Interrupted:  # SIGTERM / Ctrl+C: last.ckpt is saved; say how to go on
        last = checkpoints / "last.ckpt"
        resume = resume_command(cfg.paths.output_dir)
        error = f"interrupted; resume with: {resume}" if last.is_file() else "interrupted"
        write_result(cfg, "interrupted", None, time.perf_counter() - start, error, final)
        raise
    except Exception as err:  # noqa: BLE001 - every failure is recorded before it surfaces
        if in_sweep() or started.get("fit"):  # a sweep's job keeps its failure record
            write_result(
                cfg, "failed", None, time.perf_counter() - start, f"{type(err).__name__}: {err}"
            )
        elif held:  # an earlier run's folder, as it was: no record of a command that did nothing
            undo_writes()
        else:  # a new run refused before any work: no folder left behind
            remove_fresh_folder(out)
        if in_sweep():
            log.error("job failed, the sweep goes on: %s: %s", type(err).__name__, err)
            return float("inf")  # ranks last for a minimizing sweeper
        if isinstance(err, GanError):
            raise SystemExit(f"error: {err}") from None
        raise
    if held and not started.get("fit"):  # a resume with nothing left to train
        print(
            f"nothing to train: {out} already reached trainer.max_epochs="
            f"{cfg.trainer.max_epochs}; its result.json is kept. Pass a larger "
            f"trainer.max_epochs to go on."
        )
        return None
    status = "diverged" if value is not None and not math.isfinite(value) else "ok"
    if value is None:
        log.warning("%s was never logged: nothing for a sweeper to rank", cfg.optimized_metric)
        status = "no-metric"
    seconds = time.perf_counter() - start
    write_result(cfg, status, value, seconds, final=final)
    if not in_sweep():
        best = final.get("best/val/fid")
        where = (best, int(final["best/epoch"])) if best is not None else None
        print(summary(Path(cfg.paths.output_dir), status, seconds, final, where))
    if status != "ok" and in_sweep():
        return float("inf")  # a sweeper ranks it last instead of crashing
    return value
