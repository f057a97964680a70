"""Stacked MNIST's scores: MNIST's classifier on each of the three channels.

Stacked MNIST (Metz et al. 2017, "Unrolled GANs"; VEEGAN; PacGAN) stacks three MNIST digits
as the channels of one image: 1,000 modes, label 100*a + 10*b + c. `StackedClassifier` wraps
a (frozen) MNIST classifier with the interface `GanMetrics` uses, so FID-like, KID-like,
score and coverage work unchanged; `gan.metrics.scores.mode_stats` adds the papers' two numbers:

    modes  how many of the 1,000 modes hold at least one generated sample
    kl     KL(p_gen || uniform) of the generated mode histogram, in nats:
           sum_m p(m) ln(p(m) * 1000); 0 when every mode is equally frequent

PacGAN measures both on 26,000 samples, as conf/data/stacked_mnist.yaml does
(metrics.num_samples); with fewer, `modes` is capped by the sample count, and even a G
that draws every mode equally often reads a KL of about 999 / (2 * samples).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gan.metrics.classifier_net import MNISTClassifier

NUM_MODES = 1000


class StackedClassifier(nn.Module):
    """MNIST's classifier applied per channel: images (B, 3, S, S) in [0, 1].

    `features`: the three channels' features concatenated, (B, 3 * base.feature_dim).
    `logits_from_features`: the 1,000 joint log-probabilities (B, 1000), column
    100*a + 10*b + c = log p(a | ch 0) + log p(b | ch 1) + log p(c | ch 2) (the channels
    are scored independently), so its argmax is the per-channel argmaxes' mode.
    Frozen like the base (see `gan.metrics.classifier_net.freeze`); `info` is the base's.
    """

    channels = 3

    def __init__(self, base: MNISTClassifier) -> None:
        super().__init__()
        if base.num_classes != 10:
            raise ValueError(f"a stacked classifier needs a 10-class base, got {base.num_classes}")
        self.base = base
        self.frozen = base.frozen
        self.feature_dim = 3 * base.feature_dim
        self.num_classes = NUM_MODES
        self.info = base.info

    @property
    def device(self) -> torch.device:
        return self.base.device

    @property
    def head(self) -> nn.Linear:  # for code that reads `clf.head.weight.device`
        return self.base.head

    def features(self, x: Tensor) -> Tensor:
        """Images (B, 3, S, S) -> (B, 3 * feature_dim): channel 0's features, then 1's, 2's."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got shape {tuple(x.shape)}")
        b = len(x)
        f = self.base.features(x.reshape(b * 3, 1, *x.shape[-2:]))  # (3B, F), image-major
        return f.reshape(b, self.feature_dim)

    def logits_from_features(self, features: Tensor) -> Tensor:
        """(B, 3 * feature_dim) -> joint log-probabilities (B, 1000) of the digit triples."""
        b = len(features)
        per = self.base.logits_from_features(features.reshape(b * 3, -1))  # (3B, 10)
        lp = per.float().log_softmax(dim=1).reshape(b, 3, 10)  # (B, 3, 10)
        joint = lp[:, 0, :, None, None] + lp[:, 1, None, :, None] + lp[:, 2, None, None, :]
        return joint.reshape(b, NUM_MODES)  # (B, 10, 10, 10) -> (B, 1000), index 100a+10b+c

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, 3, S, S) in [0, 1] -> joint log-probabilities (B, 1000)."""
        return self.logits_from_features(self.features(x))

    def train(self, mode: bool = True) -> StackedClassifier:
        return super().train(mode and not self.frozen)  # frozen: eval mode for good
