"""Train a GAN on MNIST.

    python -m gan.train                                   # DCGAN, the defaults
    python -m gan.train model=mlp step_ratio=d1g2 trainer.max_epochs=5
    python -m gan.train -m optimizer.lr=1e-4,2e-4,4e-4    # a sweep into multirun/

Compose the config (conf/train.yaml, checked against gan/training/config.py), seed, build the
module, datamodule, callbacks, loggers and trainer (gan.training.build), fit, and return the
metric that sweeps optimize (`optimized_metric`). Everything a run makes lands in its Hydra
run folder.

A run folder that already holds a run (a `config.yaml`, `result.json` or `checkpoints/`)
is refused with one line before anything is written to it, unless the run resumes that
one (`ckpt_path=<run>`, or `hydra.run.dir=<run> ckpt_path=last`) or `overwrite=true` says
to replace it: then the old run's checkpoints are removed first, and its other files are
rewritten as the new run goes (images of epochs the new run does not reach stay).
`ckpt_path=last|best|hpc` is resolved to its file in the run folder and checked like a path.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from gan.training.config import register
from gan.training.run import run

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Train one run (or one job of a sweep); returns the swept metric."""
    return run(cfg)


if __name__ == "__main__":
    main()
