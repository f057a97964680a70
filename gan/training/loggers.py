"""Build the loggers of the `logger` config group, with W&B made safe to use anywhere.

W&B never prompts: with `WANDB_MODE=offline`, or with no credentials (no
`WANDB_API_KEY`, no `wandb login` entry in ~/.netrc), the run is written offline into the
run folder and the `wandb sync` command that uploads it is printed at the end. In a Hydra
sweep every job is its own W&B run, named after its overrides, and all jobs of one sweep
share a `group` (the sweep folder's name). Each run is finished before the next job.

The CSV logger keeps its history: a resumed run appends to `csv/metrics.csv` instead of
deleting it (Lightning's would), and `CsvHistory` cuts the file back to the rows it held
when the resumed checkpoint was saved, so that a killed-and-resumed run's file has exactly
the rows of an uninterrupted one.
"""

from __future__ import annotations

import csv
import logging
import netrc
import os
import re
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import Logger
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig, open_dict

log = logging.getLogger("gan.loggers")


def wandb_has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_offline() -> bool:
    """True when W&B must not (or cannot) talk to its servers."""
    mode = os.environ.get("WANDB_MODE", "").lower()
    return mode in ("offline", "dryrun", "disabled") or not wandb_has_credentials()


def _sweep_info() -> tuple[str | None, str | None]:
    """(group, job name) inside a Hydra multirun, else (None, None)."""
    if not HydraConfig.initialized():
        return None, None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None, None
    sweep = Path(hc.sweep.dir)
    group = f"{sweep.parent.name}_{sweep.name}"  # e.g. 2026-11-23_10-42-07
    return group, hc.job.override_dirname or f"job{hc.job.num}"


class HistoryWriter(ExperimentWriter):
    """Lightning's CSV writer, but an existing metrics.csv is continued, not deleted."""

    def _check_log_dir_exists(self) -> None:
        self.rows = 0  # data rows in the file
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            reader = csv.DictReader(f)
            self.metrics_keys = list(reader.fieldnames or [])  # appends keep its columns
            self.rows = sum(1 for _ in reader)

    def save(self) -> None:
        self.rows += len(self.metrics)
        super().save()

    def keep_rows(self, n: int) -> None:
        """Cut metrics.csv back to its first n rows (those logged before a checkpoint)."""
        self.metrics = []
        if self.rows <= n or not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as f:
            reader = csv.DictReader(f)
            fields, kept = list(reader.fieldnames or []), [r for _, r in zip(range(n), reader)]
        with self._fs.open(self.metrics_file_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
        self.rows = len(kept)


class CSVLogger(LightningCSVLogger):
    """`logger=csv`: Lightning's CSVLogger whose metrics.csv survives a resume."""

    @property
    def experiment(self) -> HistoryWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = HistoryWriter(log_dir=self.log_dir)
        return self._experiment


class WandbLogger(LightningWandbLogger):
    """`logger=wandb`: Lightning's WandbLogger without the `anonymous` setting it always
    passes, which wandb no longer reads and warns about at every run."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wandb_init.pop("anonymous", None)


class CsvHistory(L.Callback):
    """Each checkpoint records how many rows metrics.csv held (flushed first); resuming
    from it cuts the file back to them, dropping rows logged after that save."""

    def __init__(self) -> None:
        self._resumed_rows: int | None = None

    @staticmethod
    def _writers(trainer: L.Trainer) -> list[HistoryWriter]:
        return [
            lg.experiment
            for lg in trainer.loggers
            if isinstance(lg, CSVLogger) and trainer.is_global_zero
        ]

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        for writer in self._writers(trainer):
            writer.save()  # what was logged before this save is on disk with it
            checkpoint["gan_csv_rows"] = writer.rows

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        rows = checkpoint.get("gan_csv_rows")
        self._resumed_rows = int(rows) if rows is not None else None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._resumed_rows is not None:
            for writer in self._writers(trainer):
                writer.keep_rows(self._resumed_rows)
            self._resumed_rows = None


def build_loggers(nodes: DictConfig) -> list[Logger]:
    loggers: list[Logger] = []
    for key, node in nodes.items():
        if not node:
            continue
        if node.get("_target_", "").endswith("WandbLogger"):
            node = _wandb_node(node)
        loggers.append(instantiate(node))
        log.debug("logger %s ready", key)
    return loggers


def _wandb_node(node: DictConfig) -> DictConfig:
    node = node.copy()
    group, name = _sweep_info()
    with open_dict(node):
        if node.get("group") is None and group is not None:
            node.group = group
        if node.get("name") is None and name is not None:
            node.name = name
        latest = Path(str(node.get("save_dir") or ".")) / "wandb" / "latest-run"
        found = (
            re.search(r"run-\d{8}_\d{6}-([a-z0-9]+)", latest.resolve().name)
            if latest.exists()
            else None
        )
        if node.get("id") is None and found:  # a resumed run: log to the same W&B run
            node.id = found.group(1)  # [offline-]run-<date>_<time>-<id>[-<n> when names clash]
            node.resume = "allow"
        if wandb_offline():
            node.offline = True
            os.environ.setdefault("WANDB_MODE", "offline")
            log.info("W&B runs offline (WANDB_MODE=offline or no credentials)")
    return node


def finish_loggers(loggers: list[Logger]) -> None:
    """Close W&B runs, so the next sweep job starts a fresh one; say how to upload offline runs."""
    for logger in loggers:
        if not isinstance(logger, LightningWandbLogger) or logger._experiment is None:
            continue
        run: Any = logger.experiment
        run_dir = Path(run.dir).parent  # <run>/wandb/offline-run-.../files -> its parent
        offline = bool(getattr(run.settings, "_offline", False)) or run.settings.mode == "offline"
        run.finish()
        if offline:
            log.info("W&B run saved offline; upload it with: wandb sync %s", run_dir)
