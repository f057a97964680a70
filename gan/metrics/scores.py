"""FID-like scores for GANs of the MNIST family, with the project's own classifiers as features.

torchmetrics computes FID and KID; the feature network is the data set's classifier of
`gan.classifier` (its 128 penultimate activations instead of Inception's 2048 pool
features), so nothing is downloaded and the features know the data. The classifier's logits
give an Inception-Score-like score and the class statistics (coverage). Stacked MNIST uses
`gan.metrics.stacked.StackedClassifier` (MNIST's classifier per channel, 1,000 joint classes).

    clf = load_or_train("data", split="train", dataset="mnist")  # cached after the first run
    metrics = GanMetrics(clf).to(device)
    floor = metrics.set_real(real)      # real (N, C, 28, 28) in [0, 1]; once
    scores = metrics.compute(to_unit_range(fake, "tanh")) # every few epochs

Scores (all from one forward pass of the classifier over the fakes), with K classes:
    fid               Frechet distance between Gaussian fits of real and fake features.
    kid               Kernel (polynomial MMD^2) distance, the mean over random subsets.
    precision         fidelity: share of fakes inside the real manifold (the union of the
                      reals' k-NN balls; Kynkaanniemi et al. 2019). 0 .. 1. One atypical
                      real with a huge ball can inflate it (uniform noise scored 0.03-0.66
                      with default-recipe classifiers): read it with density and coverage.
    recall            diversity: share of reals inside the fake manifold (the fakes' k-NN
                      balls; one stray fake with a huge ball can inflate it). 0 .. 1.
    density           fidelity, outlier-robust (Naeem et al. 2020): real balls holding each
                      fake, / k, averaged; about 1 when fakes match the reals, > 1 when they
                      crowd into dense real regions. 0 .. N / k.
    prdc_coverage     diversity, outlier-robust (Naeem et al.'s coverage): share of reals
                      whose k-NN ball holds at least one fake; ~1 - 2^-k for M = N matching
                      samples (0.97 at k = 5). 0 .. 1. (Not `coverage`, the class count.)
    mnist_score       exp(E_x KL(p(y|x) || p(y))): 1 (one class, or unsure) .. K (sure and
                      balanced); the name is MNIST's, the formula the same for every data set.
    coverage          classes holding at least min_share * 10 / K of the fakes' predictions
                      (2% for 10 classes, a fifth of the uniform share for any K: 0.02%, ~5
                      of Stacked MNIST's 26,000 samples, for its 1,000 modes).
    coverage_entropy  entropy of the predicted-class histogram, nats (ln K when balanced).
    class_share       (K,) share of the fakes predicted as each class.
    modes, kl         Stacked MNIST only: modes with >= 1 sample, KL(p_gen || uniform) (nats).

The last four (`prdc_scores`, through the `prdc` package) use the same features as FID and
KID and k = `nearest_k` (5) nearest neighbours.

FID and KID are biased upwards for small samples, and the k-NN balls of the last four shrink
as samples grow and widen with k: compare runs at the same sample sizes and k, and read
them against `set_real`'s floor (real vs real, two halves of the real set).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from gan.metrics.classifier import MNISTClassifier, freeze
from gan.metrics.prdc import named_prdc, prdc_scores
from gan.metrics.stacked import StackedClassifier

__all__ = [
    "ClassifierFeatures",
    "GanMetrics",
    "class_counts",
    "class_stats",
    "mode_stats",
    "prdc_scores",
]
Classifier = MNISTClassifier | StackedClassifier
# PRDC scores at most this many fakes (the first ones): its fake-vs-fake distances grow as
# M^2, so Stacked MNIST's 26,000 would take ~7 GB and ~30 s a validation; the 1,000 reals
# they are compared with set the scores' precision long before that.
PRDC_MAX_FAKES = 10_000


@contextmanager
def _one_cpu_thread(device: torch.device) -> Iterator[None]:
    """Run torch's CPU ops on one thread inside the block (no-op on other devices).

    FID and KID after feature extraction are hundreds of tiny ops on (<=1000, 128)
    matrices: threads cannot speed them up, and on a busy CPU every op of a 2-thread
    pool can wait a whole scheduler time slice for its second thread (measured: KID 12 s
    with 2 threads vs 0.04 s with 1, next to other jobs).
    """
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ClassifierFeatures(nn.Module):
    """The classifier as torchmetrics' custom feature network: images -> (B, feature_dim).

    `FrechetInceptionDistance(feature=ClassifierFeatures(clf))` (and KID) pass the images
    of `update()` through unchanged: give float (B, 1, 28|64, 28|64) in [0, 1]. (`normalize`
    does not matter: FID and KID only rescale images for their built-in Inception.)
    `num_features` spares FID its probe with a dummy 3x299x299 image.

    A 2-D input (B, feature_dim) is taken as features already extracted by the same
    classifier and returned as is: `GanMetrics` extracts once and feeds FID and KID both.
    """

    def __init__(self, classifier: Classifier) -> None:
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.feature_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            if x.shape[1] != self.num_features:
                raise ValueError(
                    f"features of shape {tuple(x.shape)}: expected (B, {self.num_features})"
                )
            return x
        return self.classifier.features(x)


def _quiet(make: Any, **kwargs: Any) -> Any:
    """Build a torchmetrics metric without its 'saves all features in a buffer' warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        return make(**kwargs)


def class_counts(labels: Tensor, num_classes: int) -> Tensor:
    """Samples per class: labels (M,) int64 in 0..num_classes-1 -> counts (num_classes,) int64.

    Compares in chunks (one_hot of 10,000 x 1,000 would take 80 MB) and sums: deterministic
    on CUDA, where bincount is not.
    """
    classes = torch.arange(num_classes, device=labels.device)  # (K,)
    counts = torch.zeros(num_classes, dtype=torch.int64, device=labels.device)
    for chunk in labels.split(1000):
        counts += (chunk.unsqueeze(1) == classes).sum(dim=0)  # (K,)
    return counts


def class_stats(logits: Tensor, min_share: float = 0.02) -> dict[str, Tensor]:
    """What the classifier makes of a sample: logits (M, K) -> 0-dim and (K,) float32 tensors.

    `mnist_score`: the Inception Score formula exp(mean_x KL(p(y|x) || p(y))) on the softmax,
    over all M samples at once (torchmetrics' InceptionScore with splits=1 gives the same).
    `class_share` (K,): share of samples whose argmax is each class. `coverage`: classes
    with share >= min_share * 10 / K: `min_share` is the threshold for 10 classes, a fifth of
    the uniform share, and scales with K (a stray sample or two does not count a class as
    generated). `coverage_entropy`: -sum share * ln(share), in nats; ln K when balanced.
    """
    logits = logits.float()
    k = logits.shape[1]
    log_p = logits.log_softmax(dim=1)  # (M, K) log p(y|x)
    p = log_p.exp()  # (M, K)
    p_y = p.mean(dim=0)  # (K,) the marginal p(y)
    kl = (p * (log_p - p_y.log())).sum(dim=1)  # (M,) KL(p(y|x) || p(y))
    counts = class_counts(logits.argmax(dim=1), k)  # (K,)
    share = counts.float() / len(logits)  # (K,)
    return {
        "mnist_score": kl.mean().exp(),
        "coverage": (share >= min_share * (10 / k)).float().sum(),  # exactly min_share at K=10
        "coverage_entropy": torch.special.entr(share).sum(),  # 0 ln 0 = 0
        "class_share": share,
    }


def mode_stats(modes: Tensor, num_modes: int = 1000) -> dict[str, Tensor]:
    """The mode-collapse papers' statistics of predicted modes (M,) int64 in 0..num_modes-1.

    `modes`: modes with at least one sample; `kl`: KL(p_gen || uniform) in nats, p_gen the
    histogram of the M predictions: sum_m p(m) ln(p(m) * num_modes), 0 when balanced and
    ln(num_modes / n) for n equally frequent modes. Both 0-dim float32.
    """
    counts = class_counts(modes, num_modes).float()  # (num_modes,)
    p = counts / counts.sum()
    kl = torch.special.xlogy(p, p * num_modes).sum()  # 0 ln 0 = 0 for empty modes
    return {"modes": (counts > 0).float().sum(), "kl": kl}


class GanMetrics(nn.Module):
    """FID, KID, PRDC, score and class coverage of generated images against real ones.

    `set_real` once, then `compute` as often as wanted: the real statistics are kept,
    the fake side is reset after each `compute`. Runs under no_grad, in float32 (autocast
    off), on the device the module is on (`.to(device)`; inputs are moved there).

    The classifier stays frozen and in eval mode. `state_dict()` is empty: a LightningModule
    that holds a GanMetrics keeps neither the classifier (it lives in the cache) nor the
    metric states in its checkpoints, and loading such a checkpoint leaves them as they are.
    Each process computes on its own data (no cross-process sync).
    """

    def __init__(
        self,
        classifier: Classifier,
        kid_subset_size: int = 100,  # KID's usual 1000 would exceed the ~1000 fakes per check
        kid_subsets: int = 100,
        min_share: float = 0.02,  # 10 classes: "covered" at >= 2% of the fakes (scaled by 10/K)
        batch_size: int = 500,  # images per forward pass: bounds the activations' memory
        # PRDC's k: Naeem et al.'s choice, with which matching distributions give coverage
        # ~0.97 and density ~1; larger k widens the balls and pushes all four scores to 1.
        nearest_k: int = 5,
    ) -> None:
        super().__init__()
        self.classifier = freeze(classifier)
        self.features = ClassifierFeatures(self.classifier)
        self.kid_subset_size = kid_subset_size
        self.kid_subsets = kid_subsets
        self.min_share = min_share
        self.batch_size = batch_size
        self.nearest_k = nearest_k
        self.fid, self.kid = self._new_metrics()
        self.num_real = 0  # real images in the cached statistics; 0 until set_real
        self.real_cpu: Tensor | None = None  # (N, F) on the CPU, for PRDC
        self.real_feats: Tensor | None = None  # (N, F), kept with labels for intra_fid
        self.real_labels: Tensor | None = None

    def _new_metrics(self) -> tuple[FrechetInceptionDistance, KernelInceptionDistance]:
        common = {
            "feature": self.features,
            "reset_real_features": False,
            "normalize": True,
            "sync_on_compute": False,
        }
        fid = _quiet(FrechetInceptionDistance, **common)
        kid = _quiet(
            KernelInceptionDistance,
            subsets=self.kid_subsets,
            subset_size=self.kid_subset_size,
            **common,
        )
        device = self.classifier.device
        return fid.to(device), kid.to(device)

    @property
    def device(self) -> torch.device:
        return self.classifier.device

    # ---- features --------------------------------------------------------------------

    def _extract(self, images: Tensor, what: str) -> tuple[Tensor, Tensor]:
        """Images (N, C, S, S) in [0, 1] -> features (N, feature_dim), logits (N, K), float32."""
        c = self.classifier.channels
        if images.dim() != 4 or images.shape[1] != c or len(images) < 2:
            raise ValueError(
                f"{what} images of shape {tuple(images.shape)}: expected (N >= 2, {c}, H, W)"
            )
        lo, hi = torch.aminmax(images.detach())
        if lo < -1e-3 or hi > 1 + 1e-3:  # tanh outputs given as they are, most likely
            raise ValueError(
                f"{what} images span [{lo:.3f}, {hi:.3f}], not [0, 1]: map them with "
                f"to_unit_range(images, output)"
            )
        feats, logits = [], []
        for chunk in images.split(self.batch_size):
            x = chunk.to(self.device, torch.float32, non_blocking=True)  # (b, C, S, S)
            f = self.classifier.features(x)  # (b, feature_dim)
            feats.append(f)
            logits.append(self.classifier.logits_from_features(f))  # (b, K)
        return torch.cat(feats), torch.cat(logits)

    def _distances(
        self, fid: FrechetInceptionDistance, kid: KernelInceptionDistance, fake: Tensor
    ) -> tuple[Tensor, Tensor]:
        """FID and KID mean of `fake` features (M, F) against the real side of `fid`/`kid`."""
        with _one_cpu_thread(fake.device):
            fid.update(fake, real=False)
            kid.update(fake, real=False)
            n_real = int(fid.real_features_num_samples)
            kid.subset_size = min(self.kid_subset_size, n_real, len(fake))  # KID: <= both sizes
            # KID draws its subsets from the global CPU RNG: fix them, and leave it untouched.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                kid_mean, _ = kid.compute()
            return fid.compute(), kid_mean

    # ---- the API ---------------------------------------------------------------------

    @torch.no_grad()
    def set_real(self, real: Tensor, labels: Tensor | None = None) -> dict[str, float]:
        """Cache the real statistics of `real` (N, C, S, S) in [0, 1]; return the floor.

        The floor is FID, KID and PRDC between two disjoint random halves of `real` (the
        first half as the reals): what a perfect generator would score with N/2 samples
        against N/2 reals. Keys `fid_floor`, `kid_floor`, `precision_floor`, `recall_floor`,
        `density_floor`, `prdc_coverage_floor`. Calling again replaces the reals. With
        `labels` (N,), each class's real features are kept too, for `intra_fid`.
        """
        with torch.autocast(self.device.type, enabled=False):
            feats, _ = self._extract(real, "real")  # (N, F)
            n = len(feats)
            if n < 4:
                raise ValueError(f"set_real needs at least 4 real images, got {n}")
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(0)).to(feats.device)
            half_fid, half_kid = self._new_metrics()  # throwaway: the floor's own real side
            half_fid.update(feats[perm[: n // 2]], real=True)
            half_kid.update(feats[perm[: n // 2]], real=True)
            fid_floor, kid_floor = self._distances(half_fid, half_kid, feats[perm[n // 2 :]])
            prdc_floor = named_prdc(
                prdc_scores(feats[perm[: n // 2]], feats[perm[n // 2 :]], self.nearest_k)
            )

            self.fid, self.kid = self._new_metrics()  # drops earlier reals, if any
            self.fid.update(feats, real=True)
            self.kid.update(feats, real=True)
            self.num_real = n
            self.real_cpu = feats.cpu()
            self.real_feats, self.real_labels = (
                (feats, labels.to(feats.device)) if labels is not None else (None, None)
            )
        floor = {"fid": fid_floor, "kid": kid_floor, **prdc_floor}
        return {f"{key}_floor": float(value) for key, value in floor.items()}

    @torch.no_grad()
    def compute(self, fake: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        """Scores of `fake` (M, C, S, S) in [0, 1] against the cached reals.

        Returns 0-dim float32 tensors `fid`, `kid`, `precision`, `recall`, `density`,
        `prdc_coverage` (see `prdc_scores`; on the first PRDC_MAX_FAKES fakes), `mnist_score`,
        `coverage`, `coverage_entropy` (and, for Stacked MNIST, `modes` and `kl`: see
        `mode_stats`), and `class_share` (K,), on the module's device. With the classes G was asked for,
        `labels` (M,), also `label_accuracy` (how often the classifier agrees with them) and,
        when `set_real` kept per-class reals, `intra_fid` (see `intra_fid`).
        """
        if self.num_real == 0:
            raise RuntimeError("GanMetrics.compute() before set_real(): no real statistics yet")
        with torch.autocast(self.device.type, enabled=False):
            feats, logits = self._extract(fake, "fake")  # (M, F), (M, K)
            try:
                fid, kid = self._distances(self.fid, self.kid, feats)
            finally:
                self.fid.reset()  # the fake side only: reset_real_features=False
                self.kid.reset()

            assert self.real_cpu is not None
            prdc = named_prdc(prdc_scores(self.real_cpu, feats[:PRDC_MAX_FAKES], self.nearest_k))
            stats = class_stats(logits, self.min_share)
            if isinstance(self.classifier, StackedClassifier):
                stats |= mode_stats(logits.argmax(dim=1), self.classifier.num_classes)
            if labels is not None:
                labels = labels.to(logits.device)
                stats["label_accuracy"] = (logits.argmax(dim=1) == labels).float().mean()
                if self.real_labels is not None:
                    stats["intra_fid"] = self.intra_fid(feats, labels)
        return {"fid": fid.float(), "kid": kid.float(), **prdc, **stats}

    def intra_fid(self, fake_feats: Tensor, fake_labels: Tensor) -> Tensor:
        """The mean over classes of the FID between the fakes of a class and the held-out
        reals of that class (StudioGAN's iFID): classes with fewer than 2 of either are
        left out. Per class: `metrics.num_samples` / classes fakes against its reals."""
        assert self.real_feats is not None and self.real_labels is not None
        scores = []
        with _one_cpu_thread(fake_feats.device):
            for c in torch.unique(fake_labels).tolist():
                real_c = self.real_feats[self.real_labels == c]
                fake_c = fake_feats[fake_labels == c]
                if len(real_c) < 2 or len(fake_c) < 2:
                    continue
                fid = self._new_metrics()[0]
                fid.update(real_c, real=True)
                fid.update(fake_c, real=False)
                scores.append(fid.compute().float())
        return torch.stack(scores).mean() if scores else torch.tensor(float("nan"))

    # ---- checkpoints -----------------------------------------------------------------

    def state_dict(  # type: ignore[override]
        self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False
    ) -> Any:
        # Nothing to save: the classifier is cached on disk, the real statistics are
        # rebuilt by set_real. Keeps checkpoints of a parent LightningModule small.
        return OrderedDict() if destination is None else destination

    def _load_from_state_dict(
        self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any
    ) -> None:
        # Checkpoints hold nothing of ours (see state_dict): offer the current tensors to
        # the children, so that a strict load neither complains nor changes them.
        own = nn.Module.state_dict(self, prefix=prefix, keep_vars=True)
        for key, value in own.items():
            state_dict.setdefault(key, value)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
