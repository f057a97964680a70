"""Projection's search: the latent (and class) of G whose image best matches a picture
(`search`), the project classifier of its perceptual term, pictures of the result, and the
explorer's Project tab (`Projector`, and drawing from the latent it found).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gan.data.pictures import to_generator_size, to_mnist
from gan.tools.explore import (
    PER_ROW,
    class_labels,
    classifier_file,
    generate_images,
    latents,
    num_classes,
    to_picture,
)
from gan.utils.errors import GanError, first_line

if TYPE_CHECKING:  # torch loads only when a search runs
    import numpy as np
    from torch import Tensor

    from gan.training.module import GAN

EXPECTED_SQ = {"normal": 1.0, "uniform": 1.0 / 3.0}  # E[z_i^2] of each latent distribution
# The spread of |z| (its standard deviation, ~ independent of the size): 1/sqrt(2) for a
# Gaussian's (the chi distribution's), sqrt(1/15) for U[-1, 1]'s.
NORM_STD = {"normal": math.sqrt(0.5), "uniform": math.sqrt(1 / 15)}


# ---- the search --------------------------------------------------------------------------


@dataclass
class Projection:
    """What `search` found, per target: z (T, D), labels (T,) or None, the match's images
    (T, C, H, W) in [0, 1], its pixel MSE (T,), the objective (T,) and, when frames were
    recorded, the path of the kept candidate's latents (T, F, D) from its start."""

    z: Tensor
    labels: Tensor | None
    images: Tensor
    mse: Tensor
    loss: Tensor
    path: Tensor | None


def expected_norm(dist: str, dim: int) -> float:
    """E|z| of the latent distribution, ~ sqrt(dim * E[z_i^2])."""
    return math.sqrt(dim * EXPECTED_SQ.get(dist, 1.0))


def norm_penalty(z: Tensor, dist: str) -> Tensor:
    """The prior's penalty per latent (N,): (|r - 1| - tol)^2 beyond tol, 0 within, where
    r = |z| / E|z| and tol is two standard deviations of r (where ~95% of G's latents lie).

    A penalty on any deviation, (r - 1)^2, pulls hard on few latents (with the default's 8,
    |z| itself varies by +-25%): it would pull a latent G was trained on off its image.
    """
    dim = z.shape[1]
    norm = expected_norm(dist, dim)
    tol = 2 * NORM_STD.get(dist, NORM_STD["normal"]) / norm
    return ((z.norm(dim=1) / norm - 1).abs() - tol).clamp_min(0).pow(2)


def feature_distance(clf: Any, a: Tensor, b_features: Tensor) -> Tensor:
    """|f(a) - f_b|^2 / |f_b|^2 per image: (N,); a (N, 1, H, W) in [0, 1], b_features (N, F).
    Relative, so that its weight means the same whatever the classifier's feature scale."""
    fa = clf.features(a)  # (N, F)
    return (fa - b_features).pow(2).sum(1) / b_features.pow(2).sum(1).clamp_min(1e-6)


def search(
    module: GAN,
    targets: Tensor,
    *,
    steps: int = 300,
    restarts: int = 8,
    seed: int = 0,
    lr: float = 0.1,
    perceptual: float = 0.1,
    prior: float = 1.0,
    classifier: Any = None,
    labels: Sequence[int] | None = None,
    ema: bool | None = None,
    frames: int = 0,
) -> Projection:
    """For each target image (T, C, H, W) in [0, 1], the latent (and class) of G whose image
    is nearest: Adam on `restarts` random latents per target (per class, for a conditional
    G: every class, or those in `labels`), all in one batch; the best by the objective
    (pixel MSE + perceptual x feature distance) is kept.

    `classifier`: the frozen feature network of the perceptual term (None: pixel loss alone).
    `frames` > 0 records that many points of each kept candidate's path (from its start).
    G is used in eval mode and left as it was; its weights get no gradients.
    """
    import torch

    from gan.core.ranges import to_unit_range

    g = module.sampling_generator(ema)
    device = module.device
    output, dist = module.cfg.model.output, str(module.cfg.noise.dist)
    k = int(module.num_classes or 0)
    classes = list(labels) if labels is not None else list(range(k))
    per_target = restarts * max(1, len(classes) if k else 1)  # candidates per target
    t = len(targets)
    targets = targets.to(device).float()  # (T, C, H, W)
    gen = torch.Generator().manual_seed(int(seed))
    z0 = module.sample_z(t * per_target, generator=gen).to(device)  # (T * P, D)
    cand_labels = None
    if k:
        # (T * P,): for each target, `restarts` candidates of each class in turn
        cand_labels = torch.tensor(classes, device=device).repeat_interleave(restarts).repeat(t)
    z = z0.clone().requires_grad_(True)
    target_rep = targets.repeat_interleave(per_target, dim=0)  # (T * P, C, H, W)
    use_features = classifier is not None and perceptual > 0 and targets.shape[1] == 1
    if use_features:
        classifier = classifier.to(device)
        with torch.no_grad():
            target_features = classifier.features(target_rep)  # (T * P, F)
    opt = torch.optim.Adam([z], lr=lr)
    record = (
        sorted({round(i * steps / max(frames - 1, 1)) for i in range(frames)}) if frames else []
    )
    path: list[Tensor] = []

    def objective(images: Tensor) -> tuple[Tensor, Tensor]:
        """images (N, C, H, W) in [0, 1] -> (objective (N,), pixel MSE (N,))."""
        mse = (images - target_rep).pow(2).flatten(1).mean(1)  # (N,)
        if not use_features:
            return mse, mse
        return mse + perceptual * feature_distance(classifier, images, target_features), mse

    was_training = g.training
    grads = [p.requires_grad for p in g.parameters()]
    g.eval()
    g.requires_grad_(False)  # gradients reach z alone
    try:
        for step in range(steps + 1):
            if step in record:
                path.append(z.detach().clone())
            if step == steps:
                break
            # A cosine decay to 1% of lr: large moves first, then settling into the minimum.
            for group in opt.param_groups:
                group["lr"] = lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / steps)))
            raw = g(z, cand_labels) if k else g(z)  # (N, C, H, W) in G's range
            loss, _ = objective(to_unit_range(raw.float(), output))
            if prior > 0:  # keeps z at the norms G's latents have: off them, G was never trained
                loss = loss + prior * norm_penalty(z, dist)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # each candidate's loss depends on its own z alone
            opt.step()
            if dist == "uniform":
                with torch.no_grad():
                    z.clamp_(-1, 1)  # U[-1, 1]'s support
        with torch.no_grad():
            zf = z.detach()
            raw = g(zf, cand_labels) if k else g(zf)  # (T * P, C, H, W): one batch, as searched
            images = to_unit_range(raw.float(), output)
            score, mse = objective(images)
    finally:
        g.train(was_training)
        for p, r in zip(g.parameters(), grads):
            p.requires_grad_(r)
    best = score.view(t, per_target).argmin(dim=1)  # (T,)
    pick = torch.arange(t, device=device) * per_target + best  # (T,) into the candidates
    return Projection(
        z=zf[pick].cpu(),
        labels=cand_labels[pick].cpu() if k else None,
        images=images[pick].cpu(),
        mse=mse[pick].cpu(),
        loss=score[pick].cpu(),
        path=torch.stack([p[pick] for p in path], dim=1).cpu() if path else None,  # (T, F, D)
    )


def render_path(module: GAN, found: Projection, ema: bool | None = None) -> Tensor:
    """The images along the first target's recorded path: (F, C, H, W) in [0, 1]."""
    if found.path is None:
        raise ValueError("the search recorded no path: pass frames > 0")
    z = found.path[0]  # (F, D)
    labels = None if found.labels is None else found.labels[:1].repeat(len(z))  # (F,)
    return generate_images(module, z, labels, ema)


# ---- the classifier ----------------------------------------------------------------------


def load_classifier(module: GAN) -> tuple[Any, str | None]:
    """The project classifier of the checkpoint's data (its metrics.root, split and data set),
    when it is cached; else (None, a one-line note saying the search is pixel-only and how to
    make one). Never trains one: that takes minutes and the data."""
    from gan.metrics.classifier import load_or_train

    m = module.cfg.metrics
    root, split = str(m.root), str(m.split)
    dataset = str(getattr(m, "dataset", "mnist") or "mnist")
    how = f"python -m gan.classifier data.root={root} data.split={split}"
    how += "" if dataset == "mnist" else f" data.dataset={dataset}"
    pixel_only = "the search uses the pixel loss alone and no labels are reported"
    if int(module.cfg.model.channels) != 1:
        return None, f"note: the classifier scores one-channel images; {pixel_only}."
    try:
        path = classifier_file(root, split, dataset)
    except GanError:
        return None, (
            f"note: the checkpoint's data ({dataset}, split {split}, root {root}) is not on "
            f"disk here, so no classifier: {pixel_only}."
        )
    if not path.is_file():
        return None, f"note: no cached classifier for the checkpoint's data ({how}): {pixel_only}."
    try:
        return load_or_train(root, split, False, dataset=dataset, progress_bar=False), None
    except (GanError, OSError, RuntimeError) as e:
        return None, f"note: the classifier did not load ({first_line(e)}): {pixel_only}."


def classify(clf: Any, images: Tensor) -> list[int]:
    """The classifier's label of each image (N, 1, H, W) in [0, 1]."""
    import torch

    with torch.no_grad():
        return clf(images.to(clf.device)).argmax(dim=1).tolist()


# ---- pictures of the result --------------------------------------------------------------


def side_by_side(target: Tensor, match: Tensor, scale: int = 4) -> Tensor:
    """target (1, H, W) and match (C, H, W) in [0, 1] -> one picture (3, H', W') in [0, 1]:
    the two side by side on a grey frame, upscaled `scale` times (28 px is tiny on screen)."""
    import torch
    from torchvision.utils import make_grid

    pair = torch.stack([target.expand_as(match), match])  # (2, C, H, W)
    grid = make_grid(pair, nrow=2, padding=2, pad_value=0.5)  # (3, H', W')
    return grid.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)


def write_gif(target: Tensor, frames: Tensor, path: Path, ms_per_frame: int = 120) -> None:
    """A GIF of the search: each frame (C, H, W) beside the target, the last one held longer."""
    from PIL import Image

    from gan.utils.files import atomic_write

    pictures = []
    for frame in frames:
        grid = side_by_side(target, frame, scale=3)  # (3, H', W') in [0, 1]
        pixels = (grid * 255).round().byte().permute(1, 2, 0).numpy()
        pictures.append(Image.fromarray(pixels).convert("P"))
    durations = [ms_per_frame] * (len(pictures) - 1) + [1500]
    atomic_write(
        path,
        lambda tmp: pictures[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=pictures[1:],
            duration=durations,
            loop=0,
        ),
    )


# ---- the explorer's Project tab -----------------------------------------------------------


class Projector:
    """The explorer's projection: a drawn (or uploaded) digit -> the nearest image G draws,
    the search's path, and the latent found. The classifier of the perceptual term loads on
    first use and is kept (None, with a note, when the checkpoint's data has none cached)."""

    def __init__(self, module: GAN, ema: bool | None = None) -> None:
        self.module, self.ema = module, ema
        self.lock = threading.Lock()  # gradio serves requests on several threads
        self.loaded = False
        self.classifier: Any = None
        self.note: str | None = None

    def _classifier(self) -> Any:
        with self.lock:
            if not self.loaded:
                self.classifier, self.note = load_classifier(self.module)
                self.loaded = True
        return self.classifier

    def find(
        self,
        picture: Tensor,
        steps: int,
        restarts: int,
        choice: str | None = None,
        seed: int = 0,
        frames: int = 12,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], str]:
        """Search G for `picture` (grey (H, W) in [0, 1], as drawn); returns the prepared
        digit beside the match (a picture), the strip of the search from its random start
        to the found z, the found {"z": [...], "label": class or -1} and a Markdown line."""
        import torch

        module = self.module
        if int(module.cfg.model.channels) != 1:
            raise GanError("projection finds one-channel digits; this G draws colour images.")
        target = to_generator_size(to_mnist(picture), int(module.cfg.model.img_size))
        clf = self._classifier()
        k = num_classes(module)
        labels = [int(choice)] if k and choice not in (None, PER_ROW) else None
        found = search(
            module,
            target,
            steps=steps,
            restarts=restarts,
            seed=seed,
            classifier=clf,
            labels=labels,
            ema=self.ema,
            frames=frames,
        )
        pair = to_picture(torch.cat([target.expand_as(found.images), found.images]), 2)
        walk = to_picture(render_path(module, found, self.ema), frames)
        label = int(found.labels[0]) if found.labels is not None else -1
        line = f"Pixel error (MSE, images in [0, 1]): **{float(found.mse[0]):.4f}**."
        if label >= 0:
            line += f" G's class: **{label}**."
        if clf is not None:
            drawn, matched = classify(clf, target)[0], classify(clf, found.images)[0]
            line += f" The classifier reads your digit as **{drawn}**, the match as **{matched}**."
        elif self.note:
            line += " " + self.note
        return pair, walk, {"z": found.z[0].tolist(), "label": label}, line


def found_latent(module: GAN, found: Any) -> tuple[Tensor, int | None]:
    """The latent (1, D) and class (None: unconditional) of a projection's result, checked;
    GanError when there is none yet or it does not fit this G."""
    import torch

    if not isinstance(found, dict) or not isinstance(found.get("z"), list):
        raise GanError("nothing found yet: draw a digit and press *find it in G* first.")
    z = torch.tensor(found["z"], dtype=torch.float32)[None]  # (1, D)
    if z.shape[1] != int(module.cfg.noise.dim) or not bool(torch.isfinite(z).all()):
        raise GanError("the found latent does not fit this generator: find the digit again.")
    label = found.get("label")
    k = num_classes(module)
    return z, (int(label) if k and isinstance(label, int) and 0 <= label < k else None)


def grid_with_found(
    module: GAN, found: Any, seed: int, side: int, ema: bool | None = None
) -> np.ndarray:
    """The sample grid of `seed` with G(found z) in its first cell (its class, for a
    conditional G; the other cells one row per class)."""
    import torch

    z0, label = found_latent(module, found)
    side = int(side)
    n = side * side
    z = torch.cat([z0, latents(module, seed, n)[1:]])  # (n, D)
    labels = class_labels(module, PER_ROW, n, side)
    if labels is not None and label is not None:
        labels[0] = label
    return to_picture(generate_images(module, z, labels, ema), side)


def walk_from_found(
    module: GAN,
    found: Any,
    seed_b: int,
    steps: int,
    spherical: bool,
    position: float,
    ema: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`interpolation`, starting from the found latent (in its class) instead of a seed's."""
    import torch

    from gan.core.sampling import lerp, slerp, walk

    z0, label = found_latent(module, found)
    z1 = latents(module, seed_b, 1)  # (1, D)
    steps = int(steps)
    z = walk(z0, z1, steps, spherical)  # (steps, D)
    here = (slerp if spherical else lerp)(z0, z1, torch.tensor([float(position)])).flatten(0, 1)
    labels = None if label is None else torch.full((steps + 1,), label, dtype=torch.long)
    images = generate_images(module, torch.cat([z, here]), labels, ema)  # (steps + 1, C, H, W)
    return to_picture(images[:steps], steps), to_picture(images[steps:], 1)
