"""Small per-data-set classifiers: the feature networks of the FID-like scores in `gan.metrics.scores`.

Inception-v3 knows nothing of handwritten digits and needs downloaded weights, so the
project trains its own small CNN (`gan.metrics.classifier_net`) on each data set of the MNIST
family and caches it on disk. Its penultimate layer (128 features) plays the role of
Inception's pool features, its logits that of Inception's class scores. Stacked MNIST is
scored with MNIST's classifier on each channel (`gan.metrics.stacked.StackedClassifier`).

    python -m gan.classifier                              # train on data/ (train split), or report the cache
    python -m gan.classifier data.root=../shared/mnist data.split=test data.download=false
    python -m gan.classifier data.dataset=fashion_mnist   # any key of gan.data.mnist.DATASETS
    python -m gan.classifier retrain=true max_epochs=8    # ignore the cached one

    clf = load_or_train("data", split="train", dataset="mnist")  # frozen, on the CPU; .info
    feats = clf.features(images)  # (B, 128); images (B, 1, 28|64, 28|64) in [0, 1]

Cache: `<cache_dir()>/classifier/<key>.pt`; the key names the data set and the training
data (see `classifier_key`), not the training settings: `retrain=true` replaces the file.
split="test" (the offline case, only t10k-* on disk) trains on the first 80% of the test
split and measures on the last 20%. split="train" or "all" trains on the train split and
measures on the test split, or on the train split's last 10,000 images without one.
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
