"""The networks of gan.nets: the G/D interface every family × conditioning mode keeps
(`NetworkInterfaceTests`), then what is particular to one family (init, layers, errors)."""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable

import pytest
import torch
from torch import nn

from gan.nets import ARCHITECTURES
from gan.nets.base import CLASS_HEADS, CONDITIONS
from gan.utils.errors import GanError

B = 4
LATENT = 16
CLASSES = 10
# Thin networks keep the whole file fast on CPU; a family not listed builds its defaults.
SMALL = {
    "mlp": {"hidden": 32},
    "dcgan": {"base_channels": 8},
    "dcgan64": {"base_channels": 8},
    "paddle": {"base_channels": 8, "hidden": 64},
    "upsample": {"base_channels": 8},
}
Nets = tuple[nn.Module, nn.Module]


def family(name: str):
    return importlib.import_module(f"gan.nets.{name}")


def cond_kwargs(condition: str) -> dict[str, object]:
    """What gan.nets.base.build_nets passes both networks for `condition`."""
    return {} if condition == "none" else {"condition": condition, "num_classes": CLASSES}


def build(name: str, latent_dim: int = LATENT, condition: str = "none") -> Nets:
    mod, small, cond = family(name), SMALL.get(name, {}), cond_kwargs(condition)
    return mod.Generator(latent_dim=latent_dim, **small, **cond), mod.Discriminator(**small, **cond)


# ---- the interface, for every network and every conditioning mode ---------------------------


class NetworkInterfaceTests:
    """The G/D interface the LightningModule relies on (gan/nets/__init__.py states it).

    Like diffusers' ModelTesterMixin, the tests are written once and applied to every
    network: a subclass parametrizes `arch` (a `gan.nets` family) and `condition` (a
    `condition.name`), and every test runs for each pair.
    """

    @pytest.fixture
    def make(self, arch: str, condition: str) -> Callable[..., Nets]:
        """`make(seed=0)`: a thin G and D of `arch` under `condition`, built after seeding."""

        def _make(seed: int = 0) -> Nets:
            torch.manual_seed(seed)
            return build(arch, condition=condition)

        return _make

    @pytest.fixture
    def inputs(self, condition: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Latents (B, LATENT) and, when conditioned, class labels (B,)."""
        g = torch.Generator().manual_seed(1)
        z = torch.randn(B, LATENT, generator=g)
        labels = None if condition == "none" else torch.randint(0, CLASSES, (B,), generator=g)
        return z, labels

    @staticmethod
    def generate(g: nn.Module, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return g(z) if labels is None else g(z, labels)

    @staticmethod
    def score(d: nn.Module, x: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return d(x) if labels is None else d(x, labels)

    def test_attributes(self, make: Callable[..., Nets], arch: str, condition: str) -> None:
        g, d = make()
        assert g.latent_dim == LATENT
        assert g.img_size == d.img_size in (28, 64)
        assert g.output in ("tanh", "sigmoid")
        assert d.family == arch  # named in its errors
        classes = 0 if condition == "none" else CLASSES
        assert g.num_classes == d.num_classes == classes

    def test_images_have_the_shape_and_range_of_output(
        self, make: Callable[..., Nets], inputs: tuple[torch.Tensor, torch.Tensor | None]
    ) -> None:
        g, _ = make()
        x = self.generate(g, *inputs)
        assert x.shape == (B, 1, g.img_size, g.img_size)
        lo = -1.0 if g.output == "tanh" else 0.0
        assert x.min() >= lo and x.max() <= 1.0

    def test_discriminator_gives_one_raw_logit_per_image(
        self, make: Callable[..., Nets], inputs: tuple[torch.Tensor, torch.Tensor | None]
    ) -> None:
        g, d = make()
        logits = self.score(d, self.generate(g, *inputs), inputs[1])
        assert logits.shape == (B,) and logits.is_floating_point()
        assert torch.isfinite(logits).all()

    def test_gradients_flow_through_d_into_g(
        self,
        make: Callable[..., Nets],
        inputs: tuple[torch.Tensor, torch.Tensor | None],
        condition: str,
    ) -> None:
        g, d = make()
        z, labels = inputs
        x = self.generate(g, z, labels)
        if condition in CLASS_HEADS:  # the class heads are trained through their own outputs
            logits, *heads = d(x, labels, aux=True)
            loss = logits.sum() + sum(head.sum() for head in heads)
        else:
            loss = self.score(d, x, labels).sum()
        loss.backward()
        first = next(p for p in g.parameters() if p.requires_grad)
        assert first.grad is not None and first.grad.abs().sum() > 0
        assert all(p.grad is not None for p in g.parameters())
        assert all(p.grad is not None for p in d.parameters())

    def test_generator_labels(
        self,
        make: Callable[..., Nets],
        inputs: tuple[torch.Tensor, torch.Tensor | None],
        condition: str,
    ) -> None:
        g, _ = make()
        g.eval()  # no dropout draw, BatchNorm's running statistics: comparable outputs
        z, _ = inputs
        with torch.no_grad():
            if condition == "none":
                assert g(z).shape[0] == B  # no labels needed
                return
            threes, sevens = torch.full((B,), 3), torch.full((B,), 7)
            assert not torch.allclose(g(z, threes), g(z, sevens)), "G ignores the label"
            one_hot = nn.functional.one_hot(threes, CLASSES).float()  # soft labels mix classes
            torch.testing.assert_close(g(z, one_hot), g(z, threes))
        with pytest.raises(GanError, match="class-conditional: pass labels"):
            g(z)

    def test_discriminator_labels(
        self,
        make: Callable[..., Nets],
        inputs: tuple[torch.Tensor, torch.Tensor | None],
        condition: str,
    ) -> None:
        g, d = make()
        g.eval()
        d.eval()
        z, labels = inputs
        with torch.no_grad():
            x = self.generate(g, z, labels)
            if condition == "none":
                assert d(x).shape == (B,)  # no labels needed
                return
            threes, sevens = torch.full((B,), 3), torch.full((B,), 7)
            if condition in CLASS_HEADS:  # the label reaches D's loss through its heads only
                torch.testing.assert_close(d(x, threes), d(x, sevens))
            else:
                assert not torch.allclose(d(x, threes), d(x, sevens)), "D ignores the label"
        if condition not in CLASS_HEADS:
            with pytest.raises(GanError, match="class-conditional: pass labels"):
                d(x)

    def test_aux_head(
        self,
        make: Callable[..., Nets],
        inputs: tuple[torch.Tensor, torch.Tensor | None],
        condition: str,
    ) -> None:
        g, d = make()
        z, labels = inputs
        x = self.generate(g, z, labels).detach()
        if condition not in CLASS_HEADS:
            assert d.aux_head is None and d.twin_head is None
            if condition != "none":
                with pytest.raises(GanError, match="aux=True needs condition=acgan or tacgan"):
                    d(x, labels, aux=True)
            return
        d.eval()  # no dropout draw: the two calls are comparable
        logits, *heads = d(x, labels, aux=True)  # acgan: the classifier; tacgan: and its twin
        assert logits.shape == (B,) and len(heads) == CLASS_HEADS[condition]
        assert all(head.shape == (B, CLASSES) for head in heads)
        torch.testing.assert_close(logits, d(x, labels))  # the same logit, and the classes

    def test_same_seed_same_networks_and_outputs(
        self, make: Callable[..., Nets], inputs: tuple[torch.Tensor, torch.Tensor | None]
    ) -> None:
        z, labels = inputs
        outputs = []
        for _ in range(2):
            g, d = make(seed=0)
            torch.manual_seed(1)  # the dropout draws, in training mode
            x = self.generate(g, z, labels)
            outputs.append((g.state_dict(), d.state_dict(), x, self.score(d, x, labels)))
        (ga, da, xa, la), (gb, db, xb, lb) = outputs
        for a, b in ((ga, gb), (da, db)):
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a)
        assert torch.equal(xa, xb) and torch.equal(la, lb)

    def test_state_dict_round_trip(
        self, make: Callable[..., Nets], inputs: tuple[torch.Tensor, torch.Tensor | None]
    ) -> None:
        """Weights saved as a checkpoint holds them (tensors only) load into a fresh pair and
        give the same outputs."""
        z, labels = inputs
        (ga, da), (gb, db) = make(seed=0), make(seed=1)
        for a, b in ((ga, gb), (da, db)):
            buf = io.BytesIO()
            torch.save(a.state_dict(), buf)
            buf.seek(0)
            b.load_state_dict(torch.load(buf, weights_only=True))  # strict: every key fits
            a.eval()
            b.eval()
        with torch.no_grad():
            xa, xb = self.generate(ga, z, labels), self.generate(gb, z, labels)
            torch.testing.assert_close(xa, xb, rtol=0, atol=0)
            torch.testing.assert_close(
                self.score(da, xa, labels), self.score(db, xa, labels), rtol=0, atol=0
            )

    def test_wrong_image_size(self, make: Callable[..., Nets], arch: str, condition: str) -> None:
        _, d = make()
        wrong = 64 if d.img_size == 28 else 28
        labels = None if condition == "none" else torch.zeros(B, dtype=torch.long)
        with pytest.raises(GanError, match="data.img_size") as err:
            self.score(d, torch.zeros(B, 1, wrong, wrong), labels)
        assert arch in str(err.value)

    def test_bad_latent_dim(self, arch: str, condition: str) -> None:
        with pytest.raises(GanError, match="noise.dim"):
            family(arch).Generator(latent_dim=0, **cond_kwargs(condition))

    def test_defaults_build(self, arch: str, condition: str) -> None:
        mod, cond = family(arch), cond_kwargs(condition)
        g, d = mod.Generator(**cond), mod.Discriminator(**cond)
        assert g.latent_dim == 100
        assert g.img_size == d.img_size


@pytest.mark.parametrize(
    ("arch", "condition"),
    [pytest.param(a, c, id=f"{a}-{c}") for a in ARCHITECTURES for c in CONDITIONS],
)
class TestNetworkInterface(NetworkInterfaceTests):
    """Every network of gan.nets.ARCHITECTURES under every gan.nets.base.CONDITIONS."""


# ---- what is particular to one family ------------------------------------------------------


@pytest.mark.parametrize("name", ["dcgan", "dcgan64"])
def test_dcgan_init(name: str) -> None:
    torch.manual_seed(0)
    mod = family(name)
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
    mod = family(name)
    for net in (mod.Generator(), mod.Discriminator()):
        for m in net.modules():
            if isinstance(m, torch.nn.Linear | torch.nn.Conv2d | torch.nn.ConvTranspose2d):
                fan_in, fan_out = torch.nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = (6 / (fan_in + fan_out)) ** 0.5  # Xavier: U(-bound, bound)
                assert m.weight.abs().max().item() == pytest.approx(bound, rel=0.05)
                assert m.bias is None or m.bias.abs().max().item() == 0.0


def test_wrong_image_size_suggests_model() -> None:
    from gan.nets import dcgan

    with pytest.raises(GanError, match="model=dcgan64"):
        dcgan.Discriminator(base_channels=4)(torch.zeros(2, 1, 64, 64))


def test_bad_width_and_dropout() -> None:
    from gan.nets import dcgan, upsample

    with pytest.raises(GanError, match="model.base_channels"):
        dcgan.Generator(base_channels=0)
    with pytest.raises(GanError, match="model.dropout"):
        upsample.Discriminator(dropout=1.5)
