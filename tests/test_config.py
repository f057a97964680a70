"""Unit tests of the config tree: every option composes and instantiates, bad input fails early."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from gan.training.config import to_dict
from gan.training.module import GAN
from gan.training.validate import validate
from gan.utils.errors import GanError
from tests.helpers import CONF, run_cli

MakeCfg = Callable[..., DictConfig]
GROUPS = [p.name for p in sorted(CONF.iterdir()) if p.is_dir()]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


def test_every_documented_group_exists() -> None:
    assert set(GROUPS) >= {
        "model",
        "optimizer",
        "loss",
        "label_smoothing",
        "step_ratio",
        "noise",
        "data",
        "trainer",
        "callbacks",
        "logger",
        "experiment",
    }


ROOT = CONF.parent


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_no_source_or_config_file_is_git_ignored() -> None:
    # A loose ignore rule (say `data/`, meant for downloads) would silently keep a config
    # group like conf/data/ out of every clone; the fresh clone then cannot compose.
    files = [
        str(p.relative_to(ROOT))
        for d in ("conf", "gan", "tests", "bench", "docs")
        for p in (ROOT / d).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    out = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=ROOT,
        input="\n".join(files),
        capture_output=True,
        text=True,
    )
    # run outputs, ignored on purpose (bench runs hold checkpoints; traces are > 1 MB)
    outputs = ("/runs/", "/trace_")
    ignored = [f for f in out.stdout.splitlines() if not any(o in f for o in outputs)]
    assert not ignored, f"git ignores files the project needs: {ignored}; fix .gitignore"


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_option_composes_and_instantiates(make_cfg: MakeCfg, group: str, option: str) -> None:
    cfg = make_cfg(f"{group}={option}")
    validate(cfg)
    module = GAN(
        **{
            k: to_dict(cfg[k])
            for k in ("model", "optimizer", "loss", "label_smoothing", "step_ratio", "noise")
        }
    )
    z = module.sample_z(2)
    assert z.shape == (2, cfg.noise.dim)
    assert module(z).shape == (2, cfg.model.channels, cfg.model.img_size, cfg.model.img_size)
    assert len(module.configure_optimizers()) == 2
    assert instantiate(cfg.data).batch_size == cfg.data.batch_size
    for node in (*cfg.callbacks.values(), *cfg.logger.values()):
        assert instantiate(node) is not None
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    assert trainer.max_epochs == cfg.trainer.max_epochs


def test_group_scalars_stay_overridable(make_cfg: MakeCfg) -> None:
    cfg = make_cfg(
        "step_ratio=d1g2",
        "step_ratio.d_steps=5",
        "label_smoothing=one_sided",
        "label_smoothing.real=0.8",
        "noise.dim=16",
    )
    assert (cfg.step_ratio.d_steps, cfg.step_ratio.g_steps) == (5, 2)
    assert cfg.label_smoothing.real == 0.8
    assert cfg.model.generator.latent_dim == 16  # the latent size is set in one place
    assert cfg.data.d_steps == 5  # the DataModule hands over one real chunk per D step


def test_model_choice_sets_data_range_and_size(make_cfg: MakeCfg) -> None:
    cfg = make_cfg("model=upsample")
    assert cfg.data.value_range == "sigmoid"
    cfg = make_cfg("model=dcgan64")
    assert cfg.data.img_size == 64


@pytest.mark.parametrize(
    ("override", "error", "needle"),
    [
        ("step_ratio.d_steps=two", ValidationError, "step_ratio.d_steps"),
        ("data.batch_size=abc", ValidationError, "data.batch_size"),
        ("optimizer.lrr=1", ConfigKeyError, "lrr"),
        ("model=foo", ConfigCompositionException, "model/foo"),
    ],
)
def test_type_and_key_errors_fail_at_compose(
    make_cfg: MakeCfg, override: str, error: type, needle: str
) -> None:
    with pytest.raises((error, ConfigCompositionException)) as info:
        make_cfg(override)
    assert needle in str(info.value) + str(info.value.__cause__)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["optimizer.lr=-1"], "optimizer.lr"),
        (["optimizer.lr=0"], "optimizer.lr"),
        (["data.batch_size=0"], "data.batch_size"),
        (["step_ratio.d_steps=0"], "step_ratio.d_steps"),
        (["step_ratio.g_steps=0"], "step_ratio.g_steps"),
        (["label_smoothing.real=1.5"], "label_smoothing.real"),
        (["label_smoothing.fake=-0.1"], "label_smoothing.fake"),
        (
            ["label_smoothing=noisy", "label_smoothing.noise=0.95", "label_smoothing.real=0.9"],
            "label_smoothing.noise",
        ),
        (["noise.dim=0"], "noise.dim"),
        (["noise.dist=gaussian"], "noise.dist"),
        (["loss=hinge", "label_smoothing=one_sided"], "label_smoothing=none"),
        (["model=dcgan", "data.img_size=64"], "data.img_size"),
        (["model=upsample", "data.value_range=tanh"], "data.value_range"),
        (["optimizer.g.name=adamw"], "optimizer.g.name"),
        (["optimizer.clip_value=0"], "optimizer.clip_value"),
        (["perf.compile_mode=fast"], "perf.compile_mode"),
    ],
)
def test_out_of_range_values_name_the_key(
    make_cfg: MakeCfg, overrides: list[str], needle: str
) -> None:
    with pytest.raises(GanError, match=needle.replace(".", r"\.")):
        validate(make_cfg(*overrides))


def test_cli_prints_a_short_error_without_traceback(tmp_path: Path) -> None:
    res = run_cli("gan.train", "optimizer.lr=-1", f"hydra.run.dir={tmp_path}/run", timeout=120)
    assert res.returncode != 0
    assert "optimizer.lr" in res.stderr and "> 0" in res.stderr
    assert "Traceback" not in res.stderr
    res = run_cli(
        "gan.train", "step_ratio.d_steps=two", f"hydra.run.dir={tmp_path}/run2", timeout=120
    )
    assert res.returncode != 0
    assert "step_ratio.d_steps" in res.stderr and "Traceback" not in res.stderr


# What each tutorial sets (the sources are named in conf/experiment/*.yaml): networks
# (G's first layer width), batch, noise, D:G ratio, real target, optimizers as
# (torch class, lr, betas), clipping, epochs, and whether G's update reuses the fakes
# of D's update (the MXNet tutorial and the TensorFlow notebook do).
TUTORIALS = {
    "paddle_dcgan": dict(
        model="paddle",
        g_width=2048,
        batch=128,
        noise="uniform",
        ratio=(1, 2),
        real=1.0,
        g=("Adam", 2e-4, (0.9, 0.999)),
        d=("Adam", 2e-4, (0.9, 0.999)),
        clip=None,
        epochs=20,
        reuse=False,
    ),
    "mxnet_dcgan": dict(
        model="dcgan64",
        g_width=512,
        batch=64,
        noise="normal",
        ratio=(1, 1),
        real=1.0,
        g=("Adam", 2e-4, (0.5, 0.999)),
        d=("Adam", 2e-4, (0.5, 0.999)),
        clip=None,
        epochs=5,
        reuse=True,
    ),
    "keras_dcgan": dict(
        model="upsample",
        g_width=256 * 7 * 7,
        batch=256,
        noise="uniform",
        ratio=(1, 1),
        real=1.0,
        g=("Adam", 4e-4, (0.9, 0.999)),
        d=("RMSprop", 8e-4, None),
        clip=1.0,
        epochs=43,
        reuse=False,
    ),
    "tf_vanilla_gan": dict(
        model="mlp",
        g_width=128,
        batch=100,
        noise="uniform",
        ratio=(1, 1),
        real=0.9,
        g=("Adam", 2e-3, (0.9, 0.999)),
        d=("Adam", 2e-3, (0.9, 0.999)),
        clip=None,
        epochs=100,
        reuse=True,
    ),
}


@pytest.mark.parametrize("recipe", sorted(TUTORIALS))
def test_each_recipe_builds_its_tutorials_setup(make_cfg: MakeCfg, recipe: str) -> None:
    import torch
    from torch import nn

    t = TUTORIALS[recipe]
    cfg = make_cfg(f"experiment={recipe}", tiny=False)
    assert cfg.model.name == t["model"]
    assert cfg.data.batch_size == t["batch"]
    assert (cfg.step_ratio.d_steps, cfg.step_ratio.g_steps) == t["ratio"]
    assert (cfg.label_smoothing.real, cfg.label_smoothing.fake) == (t["real"], 0.0)
    assert cfg.optimizer.clip_value == t["clip"]
    assert cfg.trainer.max_epochs == t["epochs"]
    assert cfg.perf.reuse_fake == t["reuse"]  # the tutorial's computation, at its cost
    module = GAN.from_config(cfg)
    first = next(
        m for m in module.generator.modules() if isinstance(m, nn.Linear | nn.ConvTranspose2d)
    )
    assert (getattr(first, "out_features", None) or first.out_channels) == t["g_width"]
    for opt, (kind, lr, betas) in zip(module.configure_optimizers(), (t["g"], t["d"])):
        assert type(opt).__name__ == kind
        assert opt.param_groups[0]["lr"] == pytest.approx(lr)
        if betas is not None:
            assert tuple(opt.param_groups[0]["betas"]) == betas
    z = module.sample_z(10_000)  # (10000, 100)
    assert z.shape == (10_000, 100)
    if t["noise"] == "uniform":
        assert z.min() >= -1 and z.max() <= 1
    else:
        assert z.abs().max() > 3 and torch.allclose(z.std(), torch.tensor(1.0), atol=0.02)


# What `python -m gan.train` runs (tuned for time to good digits: bench/default_vs_plain.py),
# and the recipes on model=dcgan, which keep the settings their figures were measured with:
# G's width (channels of its first layer), latent size, batch, (D, G) updates, lr, EMA, G
# reusing D's fakes.
DCGAN_RUNS = {
    "default": (128, 8, 32, (1, 2), 1e-3, True, True),
    "experiment=dcgan": (256, 100, 128, (1, 1), 2e-4, False, False),
    "experiment=fast_mnist": (256, 8, 64, (1, 2), 1e-3, True, True),
    "experiment=cgan_mnist": (256, 100, 32, (1, 1), 2e-4, False, False),
    "experiment=acgan_mnist": (256, 100, 32, (1, 1), 2e-4, False, False),
    "experiment=stacked_mnist": (256, 100, 32, (1, 2), 1e-3, True, True),
    "experiment=conditional_mnist": (128, 64, 32, (1, 2), 1e-3, True, True),
}


@pytest.mark.parametrize("condition", ["projection", "concat", "tacgan"])
def test_conditional_recipe_is_the_default_run_its_study_measured(
    make_cfg: MakeCfg, condition: str
) -> None:
    """bench.conditional's study trains `condition=<c> noise.dim=64 trainer.max_epochs=10`
    on the default run: the recipe must be that run, so that its figures are the recipe's."""
    recipe = make_cfg("experiment=conditional_mnist", f"condition={condition}", tiny=False)
    study = make_cfg(f"condition={condition}", "noise.dim=64", "trainer.max_epochs=10", tiny=False)
    recipe.tags = study.tags
    assert OmegaConf.to_container(recipe) == OmegaConf.to_container(study)


@pytest.mark.parametrize("run", sorted(DCGAN_RUNS))
def test_default_and_dcgan_recipes_keep_their_measured_settings(
    make_cfg: MakeCfg, run: str
) -> None:
    from torch import nn

    width, latent, batch, ratio, lr, ema, reuse = DCGAN_RUNS[run]
    cfg = make_cfg(*([] if run == "default" else [run]), tiny=False)
    assert cfg.model.name == "dcgan"
    assert (cfg.data.batch_size, cfg.optimizer.lr) == (batch, pytest.approx(lr))
    assert (cfg.step_ratio.d_steps, cfg.step_ratio.g_steps) == ratio
    assert (cfg.ema.enabled, cfg.perf.reuse_fake) == (ema, reuse)
    module = GAN.from_config(cfg)
    first = next(m for m in module.generator.modules() if isinstance(m, nn.ConvTranspose2d))
    assert first.out_channels == width
    assert (module.generator.latent_dim, module.sample_z(2).shape) == (latent, (2, latent))
    d_first = next(m for m in module.discriminator.modules() if isinstance(m, nn.Conv2d))
    assert d_first.out_channels == 64  # D is the same in all of them


def test_gan_built_by_hand_is_the_default_run(make_cfg: MakeCfg) -> None:
    """The schema's defaults are what `python -m gan.train` runs: `GAN()` builds the module
    the composed default config builds, but for the metrics (no data to score against).
    conf/model/dcgan.yaml lists the widths, which are the dcgan classes' defaults."""
    by_hand = GAN()
    composed = GAN.from_config(make_cfg(tiny=False))
    mine, theirs = to_dict(by_hand.cfg), to_dict(composed.cfg)
    for groups in (mine, theirs):
        groups.pop("metrics")
        for net in ("generator", "discriminator"):
            groups["model"][net].pop("base_channels", None)
    assert mine == theirs
    a, b = by_hand.state_dict(), composed.state_dict()
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
