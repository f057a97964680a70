"""Class-conditional GANs: every `condition` option with every `model`, sampling by label,
the class scores and the errors a user meets (bit-exact resume with conditioning on is
tests/faults/test_crash_resume.py's `class-conditional` case). The networks' own label
handling, every family with every condition, is tests/test_nets.py's interface tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict
from PIL import Image

from gan.core.sampling import generate
from gan.nets import ARCHITECTURES
from gan.nets.base import CLASS_HEADS, CONDITIONS
from gan.tools.sample import load_gan
from gan.tools.sample import main as sample_main
from gan.training.module import GAN
from gan.training.run import train
from gan.training.validate import validate
from gan.utils.errors import GanError
from tests.helpers import TINY, compose_cfg, read_metrics

MakeCfg = Callable[..., DictConfig]
CONDITIONAL = [c for c in CONDITIONS if c != "none"]


@pytest.mark.parametrize("condition", CONDITIONAL)
@pytest.mark.parametrize("model", ARCHITECTURES)
def test_the_label_reaches_g_and_d(make_cfg: MakeCfg, model: str, condition: str) -> None:
    module = GAN.from_config(make_cfg(f"model={model}", f"condition={condition}")).eval()
    size = module.cfg.model.img_size
    assert module.num_classes == 10
    z = module.sample_z(4)
    threes, sevens = torch.full((4,), 3), torch.full((4,), 7)
    with torch.no_grad():
        a, b = module(z, threes), module(z, sevens)  # same z, two labels
        assert a.shape == (4, 1, size, size)
        assert not torch.allclose(a, b), "G ignores the label"
        d = module.discriminator
        if condition in CLASS_HEADS:  # the label reaches D's loss through its class heads
            logits, *heads = d(a, threes, aux=True)
            assert logits.shape == (4,) and all(h.shape == (4, 10) for h in heads)
        else:
            assert d(a, threes).shape == (4,)
            assert not torch.allclose(d(a, threes), d(a, sevens)), "D's logit ignores the label"
    with pytest.raises(GanError, match="class-conditional: pass labels"):
        module.generator(z)


@pytest.mark.parametrize("condition", CONDITIONAL)
@pytest.mark.parametrize("model", ARCHITECTURES)
def test_fast_dev_run_every_condition_and_model(
    make_cfg: MakeCfg, model: str, condition: str
) -> None:
    cfg = make_cfg(f"model={model}", f"condition={condition}", "trainer.fast_dev_run=true")
    train(cfg)


def test_the_grid_has_one_row_per_class(make_cfg: MakeCfg) -> None:
    cfg = make_cfg(
        "model=mlp", "condition=projection", "trainer.max_epochs=1", "metrics.enabled=false"
    )
    train(cfg)
    (grid,) = (Path(cfg.paths.output_dir) / "images").glob("grid_*.png")
    with Image.open(grid) as image:
        assert image.size == (8 * 30 + 2, 10 * 30 + 2)  # 10 classes x 8 latents of 28 px + padding


def test_a_label_walk_mixes_two_classes(make_cfg: MakeCfg) -> None:
    module = GAN.from_config(make_cfg("model=mlp", "condition=concat")).eval()
    z = module.sample_z(1).repeat(3, 1)
    mixes = torch.tensor(
        [[1.0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0.5, 0.5] + [0.0] * 8, [0.0, 1] + [0.0] * 8]
    )
    walk = generate(module, z, mixes)
    ends = generate(module, z[:2], torch.tensor([0, 1]))
    torch.testing.assert_close(walk[[0, 2]], ends)  # one-hot mixtures are the classes
    assert not torch.allclose(walk[1], ends[0]) and not torch.allclose(walk[1], ends[1])


def test_compose_time_errors(make_cfg: MakeCfg) -> None:
    cfg = make_cfg("condition=projection", "condition.num_classes=1")
    with pytest.raises(
        GanError, match="condition=projection needs a labelled data set with 2 or more"
    ):
        validate(cfg)
    with pytest.raises(GanError, match="condition.aux_weight"):
        validate(make_cfg("condition=acgan", "condition.aux_weight=-1"))
    for condition in ("acgan", "tacgan"):  # without its class heads' loss D ignores the labels
        with pytest.raises(GanError, match="condition.aux_weight > 0"):
            validate(make_cfg(f"condition={condition}", "condition.aux_weight=0"))


@pytest.fixture(scope="module")
def conditional_ckpt(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("cond") / "run"
    cfg = compose_cfg(
        *TINY,
        f"data.root={tiny_root}",
        "model=mlp",
        "condition=projection",
        "trainer.max_epochs=1",
        "metrics.enabled=false",
        "callbacks=none",
        out=run,
    )
    with open_dict(cfg):
        cfg.trainer.enable_checkpointing = True
        cfg.callbacks = {
            "ckpt": {
                "_target_": "lightning.pytorch.callbacks.ModelCheckpoint",
                "dirpath": str(run / "checkpoints"),
                "save_last": True,
            }
        }
    train(cfg)
    return run / "checkpoints" / "last.ckpt"


def test_sampling_by_label(conditional_ckpt: Path, tmp_path: Path) -> None:
    out = sample_main(
        [f"ckpt={conditional_ckpt}", "label=7", "n=6", "format=pt", f"out={tmp_path / 's.pt'}"]
    )
    sevens = torch.load(out)
    assert sevens.shape == (6, 1, 28, 28)
    out = sample_main([f"ckpt={conditional_ckpt}", "per_class=3", f"out={tmp_path / 'grid.png'}"])
    with Image.open(out) as image:
        assert image.size == (3 * 30 + 2, 10 * 30 + 2)  # one row per class
    out = sample_main(
        [f"ckpt={conditional_ckpt}", "labels=[1,2]", "n=4", "format=pt", f"out={tmp_path / 'm.pt'}"]
    )
    mixed = torch.load(out)
    module = load_gan(conditional_ckpt)
    z = module.sample_z(4, generator=torch.Generator().manual_seed(0))
    want = generate(module, z, torch.tensor([1, 2, 1, 2]))
    torch.testing.assert_close(mixed, ((want + 1) / 2).clamp(0, 1))  # classes cycle over the n


def test_sampling_errors(conditional_ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(
        SystemExit, match="label 12 is outside this checkpoint's classes: use 0 to 9"
    ):
        sample_main([f"ckpt={conditional_ckpt}", "label=12", f"out={tmp_path / 'x.png'}"])
    with pytest.raises(SystemExit, match="label and per_class both pick classes"):
        sample_main([f"ckpt={conditional_ckpt}", "label=1", "per_class=2"])


def test_an_unconditional_checkpoint_refuses_labels(make_cfg: MakeCfg, tmp_path: Path) -> None:
    cfg = make_cfg("model=mlp", "trainer.max_epochs=1", "metrics.enabled=false")
    train(cfg)
    last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    with pytest.raises(SystemExit, match="is unconditional .* Drop label="):
        sample_main([f"ckpt={last}", "label=3", f"out={tmp_path / 'x.png'}"])


def test_resume_refuses_another_condition(make_cfg: MakeCfg, tmp_path: Path) -> None:
    first = make_cfg(
        "model=mlp", "condition=projection", "trainer.max_epochs=1", "metrics.enabled=false"
    )
    train(first)
    last = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    second = make_cfg("model=mlp", "condition=concat", "metrics.enabled=false", f"ckpt_path={last}")
    with pytest.raises(
        GanError, match="condition.name=projection, but this run has condition.name=concat"
    ):
        train(second)


def test_label_accuracy_and_intra_fid(tiny_root: Path) -> None:
    from gan.data.mnist import load_mnist_split
    from gan.metrics.classifier import load_or_train
    from gan.metrics.scores import GanMetrics

    clf = load_or_train(
        str(tiny_root), "train", max_epochs=1, accelerator="cpu", progress_bar=False
    )
    images, labels = load_mnist_split(str(tiny_root), "train")  # (64, 28, 28), (64,)
    x = images.unsqueeze(1).float() / 255  # (64, 1, 28, 28) in [0, 1]
    metrics = GanMetrics(clf)
    metrics.set_real(x, labels)
    agree = (clf(x).argmax(1) == labels).float().mean()
    right = metrics.compute(x, labels)
    assert right["label_accuracy"] == pytest.approx(float(agree))
    wrong = metrics.compute(x, (labels + 1) % 10)  # every image asked for as another class
    assert wrong["label_accuracy"] < right["label_accuracy"] or float(agree) == 0
    assert right["intra_fid"] < wrong["intra_fid"]  # a class's reals match themselves best


def test_a_conditional_run_logs_its_class_scores(make_cfg: MakeCfg) -> None:
    cfg = make_cfg("model=mlp", "condition=projection", "trainer.max_epochs=1", "callbacks=none")
    train(cfg)
    rows = [r for r in read_metrics(Path(cfg.paths.output_dir)) if r.get("val/label_accuracy")]
    assert rows and 0 <= float(rows[-1]["val/label_accuracy"]) <= 1
    assert float(rows[-1]["val/intra_fid"]) > 0


def test_conditioning_with_the_speed_options(make_cfg: MakeCfg) -> None:
    cfg = make_cfg(
        "model=dcgan",
        "condition=projection",
        "trainer.precision=bf16-mixed",
        "perf.channels_last=true",
        "perf.reuse_fake=true",
        "step_ratio=d2g1",
        "ema.enabled=true",
        "trainer.fast_dev_run=true",
    )
    train(cfg)
