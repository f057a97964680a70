"""The one builder: module, datamodule, callbacks, loggers and trainer from a composed config.

`gan.train`, `gan.bench` and the tests all build through here:

    run = build(cfg)                                   # cfg: conf/train.yaml, composed
    run.trainer.fit(run.module, datamodule=run.datamodule)

`build(cfg, callbacks=[...], max_steps=10)` adds callbacks and overrides Trainer
arguments (the benchmark's timers, a test's crash injector).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from gan.metrics.classifier import load_or_train
from gan.metrics.scores import GanMetrics
from gan.training.config import to_dict
from gan.training.faults import AtomicCheckpointIO, RngState
from gan.training.health import NanGuard
from gan.training.loggers import CsvHistory, build_loggers
from gan.training.module import GAN


class Run(NamedTuple):
    module: GAN
    datamodule: L.LightningDataModule
    trainer: L.Trainer
    loggers: list[Logger]


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """The `callbacks` group's callbacks, after the always-on ones (NaN guard, RNG state).

    The NaN guard comes first, so a broken iteration stops before anything is saved.
    """
    callbacks: list[L.Callback] = [NanGuard(**to_dict(cfg.guard)), RngState(), CsvHistory()]
    for node in cfg.callbacks.values():
        if not node:
            continue
        if not cfg.metrics.enabled and node.get("monitor") == "val/fid":
            node = OmegaConf.merge(node, {"monitor": None})  # no scores: keep the latest
        callback = instantiate(node)
        if isinstance(callback, ProgressBar) and not cfg.trainer.enable_progress_bar:
            continue  # the switch wins over callbacks.progress_bar
        callbacks.append(callback)
    return callbacks


def build(cfg: DictConfig, callbacks: Sequence[L.Callback] = (), **trainer_args: Any) -> Run:
    """Everything `trainer.fit` needs; `trainer_args` override the `trainer` node."""
    loggers = build_loggers(cfg.logger)
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        callbacks=[*build_callbacks(cfg), *callbacks],
        logger=loggers or False,
        plugins=[AtomicCheckpointIO()],
        **trainer_args,
    )
    module = GAN.from_config(cfg)
    if cfg.metrics.enabled:  # the cached classifier (trained first when missing)
        m = cfg.metrics
        clf = load_or_train(
            m.root, m.split, m.download, max_epochs=m.classifier_epochs, dataset=m.dataset
        )
        module.metrics = GanMetrics(clf)  # frozen; its state_dict is empty: not in checkpoints
    return Run(module, instantiate(cfg.data), trainer, loggers)
