"""Compose-time checks of a training config: value ranges and combinations the typed
schema (gan/training/config.py) cannot express. `gan.train` calls `validate` before anything is
built, so a bad value is one clear line naming the key and the fix:

    validate(cfg)  # GanError: optimizer.lr=0.0 is out of range: it must be > 0. ...
"""

from __future__ import annotations

import math
from dataclasses import asdict, is_dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from gan.core.augment import POLICIES
from gan.core.losses import LOSSES as loss_registry
from gan.core.losses import SMOOTHING
from gan.core.optim import OPTIMIZERS as optimizer_registry
from gan.core.optim import SCHEDULES as schedule_registry
from gan.core.ranges import RANGES
from gan.core.sampling import NOISES
from gan.data.mnist import DATASETS
from gan.nets.base import CLASS_HEADS, CONDITIONS, registered
from gan.training.config import TrainConfig
from gan.utils.errors import GanError

# The lists of choices come from the registries, so a new loss, optimizer or noise is
# added in one place.
LOSSES = tuple(loss_registry)
TARGET_LOSSES = tuple(k for k, v in loss_registry.items() if v.uses_targets)  # smoothing applies
OPTIMIZERS = tuple(optimizer_registry)
SCHEDULES = tuple(schedule_registry)
NOISE = tuple(NOISES)
OUTPUTS = tuple(RANGES)
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _check(ok: bool, key: str, value: Any, need: str) -> None:
    if not ok:
        raise GanError(f"{key}={value!r} is out of range: it must be {need}. Fix it with {key}=...")


# Groups whose numbers are checked against ranges below: inf or nan passes a one-sided
# bound (`lr > 0`) or fails it with a misleading message, so each is first checked finite.
FINITE_GROUPS = ("optimizer", "loss", "label_smoothing", "stabilize", "ema", "guard", "condition")
MAX_SEED = 2**32 - 1  # Lightning's seed_everything takes 0..2**32-1 (numpy's range)


def _numbers(node: Any, key: str) -> list[tuple[str, float]]:
    """Every float leaf under `node` (a config node, dataclass, dict or list) as (key, value)."""
    if isinstance(node, (DictConfig, ListConfig)):  # resolved in place: ${...} see the root
        node = OmegaConf.to_container(node, resolve=True)
    elif is_dataclass(node) and not isinstance(node, type):
        node = asdict(node)
    if isinstance(node, dict):
        return [kv for k, v in node.items() for kv in _numbers(v, f"{key}.{k}")]
    if isinstance(node, (list, tuple)):
        return [kv for v in node for kv in _numbers(v, key)]
    return [(key, node)] if isinstance(node, float) else []


def validate(cfg: DictConfig | TrainConfig) -> None:
    """Check value ranges and combinations the types alone cannot express."""
    c = cfg
    for group in FINITE_GROUPS:
        for key, value in _numbers(getattr(c, group), group):
            _check(math.isfinite(value), key, value, "a finite number")
    _check(
        0 <= c.seed <= MAX_SEED, "seed", c.seed, f"within 0..{MAX_SEED}, as seed_everything takes"
    )
    _check(c.optimizer.lr > 0, "optimizer.lr", c.optimizer.lr, "> 0")
    _check(c.optimizer.d_lr_scale > 0, "optimizer.d_lr_scale", c.optimizer.d_lr_scale, "> 0")
    for net in ("g", "d"):
        spec = c.optimizer[net]
        key = f"optimizer.{net}"
        _check(spec.name in OPTIMIZERS, f"{key}.name", spec.name, f"one of {OPTIMIZERS}")
        _check(spec.lr is None or spec.lr > 0, f"{key}.lr", spec.lr, "> 0 (or null)")
        _check(
            len(spec.betas) == 2 and all(0 <= b < 1 for b in spec.betas),
            f"{key}.betas",
            list(spec.betas),
            "two numbers in [0, 1)",
        )
        _check(spec.weight_decay >= 0, f"{key}.weight_decay", spec.weight_decay, ">= 0")
    for k in ("clip_value", "clip_norm"):
        v = c.optimizer[k]
        _check(v is None or v > 0, f"optimizer.{k}", v, "> 0 (or null to turn clipping off)")
    o = c.optimizer
    _check(o.schedule in SCHEDULES, "optimizer.schedule", o.schedule, f"one of {SCHEDULES}")
    _check(0 <= o.decay_start < 1, "optimizer.decay_start", o.decay_start, "within [0, 1)")
    _check(
        0 <= o.final_lr_scale <= 1, "optimizer.final_lr_scale", o.final_lr_scale, "within [0, 1]"
    )
    _check(c.loss.name in LOSSES, "loss.name", c.loss.name, f"one of {LOSSES}")
    _check(c.loss.gp_weight >= 0, "loss.gp_weight", c.loss.gp_weight, ">= 0")
    ls = c.label_smoothing
    _check(ls.name in SMOOTHING, "label_smoothing.name", ls.name, f"one of {SMOOTHING}")
    for k in ("real", "fake", "flip_prob"):
        _check(0 <= ls[k] <= 1, f"label_smoothing.{k}", ls[k], "within [0, 1]")
    _check(0 <= ls.noise <= 1, "label_smoothing.noise", ls.noise, "within [0, 1]")
    _check(
        ls.real - ls.noise >= 0,
        "label_smoothing.noise",
        ls.noise,
        "<= label_smoothing.real, so real targets stay within [0, 1]",
    )
    _check(
        ls.fake + ls.noise <= 1,
        "label_smoothing.noise",
        ls.noise,
        "<= 1 - label_smoothing.fake, so fake targets stay within [0, 1]",
    )
    smoothing_on = ls.real != 1 or ls.fake != 0 or ls.noise > 0 or ls.flip_prob > 0
    if smoothing_on and c.loss.name not in TARGET_LOSSES:
        raise GanError(
            f"label_smoothing={ls.name} changes D's targets, but loss={c.loss.name} has none "
            f"(it scores raw logits). Use label_smoothing=none, or a loss with targets: "
            f"{', '.join(TARGET_LOSSES)}."
        )
    _check(c.step_ratio.d_steps >= 1, "step_ratio.d_steps", c.step_ratio.d_steps, ">= 1")
    _check(c.step_ratio.g_steps >= 1, "step_ratio.g_steps", c.step_ratio.g_steps, ">= 1")
    _check(c.noise.dist in NOISE, "noise.dist", c.noise.dist, f"one of {NOISE}")
    _check(c.noise.dim >= 1, "noise.dim", c.noise.dim, ">= 1")
    _check(0 < c.ema.decay < 1, "ema.decay", c.ema.decay, "within (0, 1)")
    _check(c.ema.every_n_steps >= 1, "ema.every_n_steps", c.ema.every_n_steps, ">= 1")
    _check(c.ema.bn_batches >= 0, "ema.bn_batches", c.ema.bn_batches, ">= 0")
    st = c.stabilize
    for k in ("r1", "r2"):
        _check(st[k] >= 0, f"stabilize.{k}", st[k], ">= 0 (0 turns it off)")
    _check(st.reg_every >= 1, "stabilize.reg_every", st.reg_every, ">= 1")
    _check(0 < st.topk <= 1, "stabilize.topk", st.topk, "within (0, 1] (1 turns it off)")
    policies = tuple(POLICIES)
    for p in st.diffaug:
        _check(p in policies, "stabilize.diffaug", list(st.diffaug), f"a list of {policies}")
    _check(0 <= st.ada_p0 <= 1, "stabilize.ada_p0", st.ada_p0, "within [0, 1]")
    _check(0 < st.ada_target < 1, "stabilize.ada_target", st.ada_target, "within (0, 1)")
    _check(st.ada_interval >= 1, "stabilize.ada_interval", st.ada_interval, ">= 1")
    _check(st.ada_kimg > 0, "stabilize.ada_kimg", st.ada_kimg, "> 0")
    _check(st.pack >= 1, "stabilize.pack", st.pack, ">= 1 (1 turns it off)")
    if st.pack > 1 and c.condition.name != "none":
        raise GanError(
            f"stabilize.pack={st.pack} scores {st.pack} images as one, but condition="
            f"{c.condition.name} gives D one label per image. Use condition=none, or "
            f"stabilize.pack=1."
        )
    if c.data.batch_size % st.pack:
        fit = c.data.batch_size // st.pack * st.pack or st.pack  # the nearest multiple below
        raise GanError(
            f"stabilize.pack={st.pack} needs data.batch_size to be a multiple of it (got "
            f"{c.data.batch_size}): set data.batch_size={fit}."
        )
    _check(c.guard.check_every_n >= 0, "guard.check_every_n", c.guard.check_every_n, ">= 0")
    _check(
        c.guard.on_nonfinite in ("stop", "rollback"),
        "guard.on_nonfinite",
        c.guard.on_nonfinite,
        "'stop' or 'rollback'",
    )
    _check(0 < c.guard.lr_factor < 1, "guard.lr_factor", c.guard.lr_factor, "within (0, 1)")
    _check(
        c.perf.compile_mode in COMPILE_MODES,
        "perf.compile_mode",
        c.perf.compile_mode,
        f"one of {COMPILE_MODES}",
    )
    _check(c.metrics.num_samples >= 2, "metrics.num_samples", c.metrics.num_samples, ">= 2")
    if c.metrics.enabled and c.data.val_size < 4:
        raise GanError(
            f"metrics.enabled=true needs held-out real images, but data.val_size="
            f"{c.data.val_size}. Set data.val_size=1000 (the default), or metrics.enabled=false."
        )
    _check(c.data.dataset in DATASETS, "data.dataset", c.data.dataset, f"one of {tuple(DATASETS)}")
    ds = DATASETS[c.data.dataset]
    for k in ("channels", "num_classes"):
        want = getattr(ds, k)
        _check(c.data[k] == want, f"data.{k}", c.data[k], f"{want} for data={c.data.dataset}")
    cond = c.condition
    _check(cond.name in CONDITIONS, "condition.name", cond.name, f"one of {CONDITIONS}")
    _check(cond.embed_dim >= 1, "condition.embed_dim", cond.embed_dim, ">= 1")
    _check(cond.aux_weight >= 0, "condition.aux_weight", cond.aux_weight, ">= 0")
    if cond.name in CLASS_HEADS and cond.aux_weight == 0:  # the class heads are its conditioning
        raise GanError(
            f"condition={cond.name} with condition.aux_weight=0 never trains D's class heads, "
            f"so nothing ties G's digits to their labels. Use condition.aux_weight > 0, or "
            f"another condition."
        )
    if cond.name != "none" and cond.num_classes < 2:
        raise GanError(
            f"condition={cond.name} needs a labelled data set with 2 or more classes, but "
            f"condition.num_classes={cond.num_classes}. Use condition=none, or drop the "
            f"condition.num_classes override (it follows data.num_classes)."
        )
    _check(c.data.batch_size >= 1, "data.batch_size", c.data.batch_size, ">= 1")
    _check(c.data.val_size >= 0, "data.val_size", c.data.val_size, ">= 0")
    _check(c.data.num_workers >= 0, "data.num_workers", c.data.num_workers, ">= 0")
    _check(
        c.data.limit is None or c.data.limit >= c.data.num_classes,
        "data.limit",
        c.data.limit,
        f">= data.num_classes ({c.data.num_classes}), one image of each class at least (or null)",
    )
    _check(c.model.output in OUTPUTS, "model.output", c.model.output, f"one of {OUTPUTS}")
    _check(c.data.img_size in (28, 64), "data.img_size", c.data.img_size, "28 or 64")
    if c.data.img_size != c.model.img_size:
        raise GanError(
            f"model={c.model.name} makes {c.model.img_size}x{c.model.img_size} images, but "
            f"data.img_size={c.data.img_size}. Drop the data.img_size override (it follows the "
            f"model), or pick a model for that size (model=dcgan64 for 64x64)."
        )
    if c.data.value_range != c.model.output:
        raise GanError(
            f"model={c.model.name} outputs {c.model.output} but data.value_range="
            f"{c.data.value_range}: real and generated images would live in different ranges. "
            f"Drop the data.value_range override; it follows model.output."
        )
    for role in ("generator", "discriminator"):  # before a run folder is made
        registered(c.model[role].get("_target_"), role, bool(c.get("trust_code", False)))
