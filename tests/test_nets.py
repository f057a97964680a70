"""Unit tests for gan.nets: shapes, output ranges, gradient flow, init and errors."""

import importlib

import pytest
import torch

from gan.nets import ARCHITECTURES
from gan.utils.errors import GanError

B = 4
# Thin networks keep the whole file fast on CPU.
SMALL = {
    "mlp": {"hidden": 32},
    "dcgan": {"base_channels": 8},
    "dcgan64": {"base_channels": 8},
    "paddle": {"base_channels": 8, "hidden": 64},
    "upsample": {"base_channels": 8},
}


def build(name: str, latent_dim: int = 16):
    mod = importlib.import_module(f"gan.nets.{name}")
    return mod.Generator(latent_dim=latent_dim, **SMALL[name]), mod.Discriminator(**SMALL[name])


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_shapes_range_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    g, d = build(name)
    assert g.latent_dim == 16
    assert g.img_size == d.img_size in (28, 64)
    assert g.output in ("tanh", "sigmoid")

    x = g(torch.randn(B, 16))
    assert x.shape == (B, 1, g.img_size, g.img_size)
    lo = -1.0 if g.output == "tanh" else 0.0
    assert x.min() >= lo and x.max() <= 1.0

    logits = d(x)
    assert logits.shape == (B,)
    logits.sum().backward()
    first = next(p for p in g.parameters() if p.requires_grad)
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert all(p.grad is not None for p in d.parameters())


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_defaults_build(name: str) -> None:
    mod = importlib.import_module(f"gan.nets.{name}")
    g, d = mod.Generator(), mod.Discriminator()
    assert g.latent_dim == 100
    assert g.img_size == d.img_size


@pytest.mark.parametrize("name", ["dcgan", "dcgan64"])
def test_dcgan_init(name: str) -> None:
    torch.manual_seed(0)
    mod = importlib.import_module(f"gan.nets.{name}")
    for net in (mod.Generator(base_channels=32), mod.Discriminator(base_channels=32)):
        for m in net.modules():
            if (
                isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
                and m.weight.numel() > 1000
            ):
                assert m.weight.std().item() == pytest.approx(0.02, rel=0.15)
            if isinstance(m, torch.nn.BatchNorm2d):
                assert m.weight.mean().item() == pytest.approx(1.0, abs=0.02)
                assert m.bias.abs().max().item() == 0.0


def test_paddle_nets_have_the_books_layers() -> None:
    # PaddlePaddle book, network.py: G's deconvs take 128 channels and the first has no BN;
    # D's convs are unpadded (28 -> 24 -> 12 -> 8 -> 4), so its fc sees 128 * 4 * 4 = 2048.
    from torch import nn

    from gan.nets import paddle

    torch.manual_seed(0)
    g, d = paddle.Generator(), paddle.Discriminator()
    deconvs = [m for m in g.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [tuple(m.weight.shape) for m in deconvs] == [(128, 128, 5, 5), (128, 1, 5, 5)]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in g.modules())
    assert [m.out_features for m in g.modules() if isinstance(m, nn.Linear)] == [2048, 6272]
    assert [m.in_features for m in d.modules() if isinstance(m, nn.Linear)] == [2048, 1024]
    assert {m.negative_slope for m in d.modules() if isinstance(m, nn.LeakyReLU)} == {0.02}


@pytest.mark.parametrize("name", ["mlp", "paddle", "upsample"])
def test_tutorial_nets_start_from_xavier_weights(name: str) -> None:
    # Keras, TensorFlow and Fluid default to Glorot-uniform weights and zero biases, which
    # is not PyTorch's default (kaiming_uniform with a=sqrt(5): a bound ~2x smaller).
    torch.manual_seed(0)
    mod = importlib.import_module(f"gan.nets.{name}")
    for net in (mod.Generator(), mod.Discriminator()):
        for m in net.modules():
            if isinstance(m, torch.nn.Linear | torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = (6 / (fan_in + fan_out)) ** 0.5  # Xavier: U(-bound, bound)
                assert m.weight.abs().max().item() == pytest.approx(bound, rel=0.05)
                assert m.bias is None or m.bias.abs().max().item() == 0.0


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_wrong_image_size(name: str) -> None:
    _, d = build(name)
    wrong = 64 if d.img_size == 28 else 28
    with pytest.raises(GanError, match="data.img_size") as err:
        d(torch.zeros(B, 1, wrong, wrong))
    assert name in str(err.value)


def test_wrong_image_size_suggests_model() -> None:
    from gan.nets import dcgan

    with pytest.raises(GanError, match="model=dcgan64"):
        dcgan.Discriminator(base_channels=4)(torch.zeros(2, 1, 64, 64))


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_bad_latent_dim(name: str) -> None:
    mod = importlib.import_module(f"gan.nets.{name}")
    with pytest.raises(GanError, match="noise.dim"):
        mod.Generator(latent_dim=0)


def test_bad_width_and_dropout() -> None:
    from gan.nets import dcgan, upsample

    with pytest.raises(GanError, match="model.base_channels"):
        dcgan.Generator(base_channels=0)
    with pytest.raises(GanError, match="model.dropout"):
        upsample.Discriminator(dropout=1.5)
