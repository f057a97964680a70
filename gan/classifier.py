"""Train, or find in the cache, the small classifier that scores a data set (the FID-like
scores' feature network; gan/metrics/classifier.py says how it is trained and cached).

    python -m gan.classifier                              # train on data/ (train split), or report the cache
    python -m gan.classifier data.root=../shared/mnist data.split=test data.download=false
    python -m gan.classifier data.dataset=fashion_mnist   # any key of gan.data.mnist.DATASETS
    python -m gan.classifier retrain=true max_epochs=8    # ignore the cached one
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from gan.metrics.classifier import register, run
from gan.utils.errors import GanError

register()


@hydra.main(version_base="1.3", config_path="../conf", config_name="classifier")
def main(cfg: DictConfig) -> None:
    """Load the cached classifier of the data, or train one; print its accuracy and file."""
    try:
        run(cfg)
    except GanError as err:
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
