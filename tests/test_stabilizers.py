"""The stabilisers: spectral norm, R1/R2 (lazy), DiffAugment, top-k training, EMA warm-up
with BatchNorm statistics for the averaged weights, and the relativistic pairing loss.

Each is one flag; each is tested on and off for what it exists to do. Resume stays
bit-exact with each on (tests/faults/test_crash_resume.py); the module and the floor run
the same computation with them (tests/test_step.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from gan.core.augment import AdaptiveAugment, DiffAugment, cutout, translation
from gan.core.losses import LOSSES, zero_centered_penalty
from gan.core.ranges import to_unit_range
from gan.core.sampling import generate
from gan.core.step import GanStep
from gan.metrics.classifier import load_or_train
from gan.metrics.scores import GanMetrics
from gan.training.build import build
from gan.training.checkpoints import load_gan
from gan.training.module import GAN, ema_update_fn, recompute_bn_stats
from gan.training.run import train
from gan.training.validate import validate
from gan.utils.errors import GanError
from tests.helpers import SHARED_MNIST

MakeCfg = Callable[..., DictConfig]
SMOOTHING = DictConfig({"real": 1.0, "fake": 0.0, "noise": 0.0, "flip_prob": 0.0})


class Record:
    """An `Updates` that keeps each loss and steps nothing."""

    def __init__(self) -> None:
        self.losses: dict[str, list[Tensor]] = {"d": [], "g": []}

    def train(self, net: str) -> Any:
        return contextlib.nullcontext()

    def step(self, net: str, loss: Tensor) -> None:
        self.losses[net].append(loss.detach())


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its input gradient is w for every image, so R1 = ||w||^2."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.arange(1.0, 5.0).view(1, 1, 2, 2))  # ||w||^2 = 30
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        return (x * self.w).flatten(1).sum(1)  # (B,)


# ---- spectral norm ----------------------------------------------------------------------


def test_spectral_norm_makes_every_d_layer_have_unit_spectral_norm(make_cfg: MakeCfg) -> None:
    plain = GAN.from_config(make_cfg("model=dcgan"))
    sn = GAN.from_config(make_cfg("model=dcgan", "stabilize.spectral_norm=true"))
    layers = [m for m in sn.discriminator.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert layers and all(hasattr(m, "parametrizations") for m in layers)
    assert not any(hasattr(m, "parametrizations") for m in plain.discriminator.modules())
    assert not any(hasattr(m, "parametrizations") for m in sn.generator.modules())  # D only

    x = torch.randn(16, 1, 28, 28)
    assert sn.discriminator(x).shape == (16,)
    with torch.no_grad():
        for _ in range(50):  # each training forward runs one power iteration
            sn.discriminator(x)
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.05)
    unnormalized = [m for m in plain.discriminator.modules() if isinstance(m, nn.Conv2d)]
    assert any(torch.linalg.matrix_norm(m.weight.flatten(1), ord=2) < 0.5 for m in unnormalized)


# ---- R1 / R2 ----------------------------------------------------------------------------


def test_r1_penalty_is_the_squared_gradient_norm_on_a_hand_made_case() -> None:
    d = LinearCritic()
    x = torch.randn(5, 1, 2, 2, requires_grad=True)
    assert zero_centered_penalty(d(x), x).item() == pytest.approx(30.0)


def _step(d: nn.Module, **kwargs: Any) -> tuple[GanStep, Callable[[Tensor], Tensor]]:
    """A hinge step whose G makes all-zero 2x2 fakes."""
    fake = torch.zeros(1, 1, 2, 2)
    return GanStep(
        LOSSES["hinge"],
        SMOOTHING,
        lambda n: torch.zeros(n, 3),
        g_steps=1,
        **kwargs,
    ), (lambda z: fake.expand(z.size(0), -1, -1, -1) + 0 * z.sum())


@pytest.mark.parametrize("which", ["r1", "r2"])
def test_r1_and_r2_add_gamma_half_the_squared_gradient_norm_lazily(which: str) -> None:
    d = LinearCritic()
    real = torch.randn(4, 1, 2, 2)
    plain, g = _step(d)
    base = Record()
    plain(g, d, real, base)

    gamma, every = 2.0, 3
    step, g = _step(d, **{which: gamma}, reg_every=every)
    record = Record()
    for _ in range(2 * every):
        step(g, d, real, record)
    added = [float(loss - base.losses["d"][0]) for loss in record.losses["d"]]
    # on D updates 0 and 3: gamma / 2 * ||w||^2, times the interval; none in between
    lazy = gamma / 2 * 30.0 * every
    assert added == pytest.approx([lazy, 0, 0, lazy, 0, 0])
    assert step.d_updates == 2 * every


def test_r1_config_reaches_the_module_step(make_cfg: MakeCfg) -> None:
    module = GAN.from_config(
        make_cfg("stabilize.r1=10", "stabilize.r2=2", "stabilize.reg_every=16")
    )
    assert (module.gan_step.r1, module.gan_step.r2, module.gan_step.reg_every) == (10, 2, 16)


# ---- DiffAugment ------------------------------------------------------------------------


def test_diffaugment_draws_independently_per_image_and_fills_with_the_background() -> None:
    torch.manual_seed(0)
    digit = -torch.ones(1, 1, 28, 28)
    digit[..., 10:18, 10:18] = 1.0  # a white square on a black (-1) background
    batch = digit.expand(64, -1, -1, -1)
    moved = translation(batch, fill=-1.0)
    assert moved.shape == batch.shape
    assert len({tuple(m.flatten().tolist()) for m in moved}) > 10  # shifts differ per image
    assert moved.min() == -1.0 and set(moved.unique().tolist()) <= {-1.0, 1.0}  # no grey
    cut = cutout(batch, fill=-1.0)
    assert (cut.flatten(1).eq(1).sum(1) < batch.flatten(1).eq(1).sum(1)).any()
    assert set(cut.unique().tolist()) <= {-1.0, 1.0}
    with pytest.raises(ValueError, match="unknown DiffAugment policy"):
        DiffAugment(["rotate"])


def test_diffaugment_reaches_real_and_fake_alike_and_g_gets_gradients_through_it() -> None:
    torch.manual_seed(0)
    image = -torch.ones(1, 1, 28, 28)
    image[..., 8:20, 8:20] = 1.0

    class ConstantG(nn.Module):  # every fake is the same learnable image
        def __init__(self) -> None:
            super().__init__()
            self.image = nn.Parameter(image.clone())

        def forward(self, z: Tensor) -> Tensor:
            return self.image.expand(z.size(0), -1, -1, -1)

    class Critic(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.randn(1, 1, 28, 28))
            self.seen: list[Tensor] = []

        def forward(self, x: Tensor) -> Tensor:
            self.seen.append(x.detach().clone())
            return (x * self.w).flatten(1).sum(1)

    g, d = ConstantG(), Critic()
    real = image.expand(32, -1, -1, -1)  # the reals are the fakes' image too
    step = GanStep(
        LOSSES["bce"],
        SMOOTHING,
        lambda n: torch.zeros(n, 3),
        augment=DiffAugment(["translation", "cutout"], fill=-1.0),
    )
    grads: list[Tensor] = []

    class Updates(Record):
        def step(self, net: str, loss: Tensor) -> None:
            if net == "g":
                (grad,) = torch.autograd.grad(loss, g.image)
                grads.append(grad)

    step(g, d, real, Updates())
    real_seen, fake_seen, g_seen = d.seen  # D's update: reals, fakes; then G's update
    for seen in (real_seen, fake_seen, g_seen):
        assert not torch.equal(seen, real)  # augmented
        assert len({tuple(x.flatten().tolist()) for x in seen}) > 5  # a draw per image
    assert not torch.equal(real_seen, fake_seen)  # the same images, drawn independently
    assert grads and grads[0].abs().sum() > 0  # G learns through the augmentation

    off = GanStep(LOSSES["bce"], SMOOTHING, lambda n: torch.zeros(n, 3))
    d.seen.clear()
    off(g, d, real, Record())
    assert torch.equal(d.seen[0], real)  # off: D sees the images as they are


def test_diffaug_config_is_checked_at_compose_time(make_cfg: MakeCfg) -> None:
    cfg = make_cfg("stabilize.diffaug=[translation,cutot]")
    with pytest.raises(GanError, match="stabilize.diffaug"):
        validate(cfg)
    module = GAN.from_config(make_cfg("stabilize.diffaug=[color,translation]"))
    assert module.gan_step.augment.policy == ["color", "translation"]
    assert module.gan_step.augment.fill == -1.0  # tanh's background


# ---- ADA ----------------------------------------------------------------------------------


class SignCritic(nn.Module):
    """A stub D: its logit of an image is +1 or -1, set by hand per batch position (an
    overfitting D rates every real as real)."""

    def __init__(self, signs: Tensor) -> None:
        super().__init__()
        self.signs = signs  # (B,) of +-1
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        return self.signs[: x.size(0)] + 0 * x.flatten(1).sum(1) + self.bias  # (B,)


def ada_step(ada: AdaptiveAugment) -> GanStep:
    return GanStep(LOSSES["bce"], SMOOTHING, lambda n: torch.zeros(n, 3), augment=ada)


def test_ada_p_rises_while_d_overfits_falls_when_it_does_not_and_stays_in_0_1() -> None:
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(3, 4), nn.Unflatten(1, (1, 2, 2)))
    real = torch.rand(8, 1, 2, 2)
    # p moves by 8 reals x 4 updates / (0.1 kimg x 1000) = 0.32 per interval of 4 D updates
    ada = AdaptiveAugment(["cutout"], fill=-1.0, target=0.6, interval=4, kimg=0.1)
    step = ada_step(ada)
    overfit = SignCritic(torch.ones(8))  # r_t = 1 > 0.6
    ps = []
    for _ in range(5 * 4):
        step(g, overfit, real, Record())
        ps.append(float(ada.p))
    assert ps[:3] == [0.0] * 3 and ps[3] == pytest.approx(0.32)  # only at an interval's end
    assert ps[7] == pytest.approx(0.64) and ps[11] == pytest.approx(0.96)
    assert ps[15] == ps[19] == 1.0  # clamped
    assert float(ada.rt) == 1.0 and step.d_updates == ada.updates == 20
    # Most real logits negative (the full-set case: D does not overfit): r_t = -0.5
    honest = SignCritic(torch.tensor([1.0, 1, -1, -1, -1, -1, -1, -1]))
    for _ in range(4 * 4):
        step(g, honest, real, Record())
        assert 0.0 <= float(ada.p) <= 1.0
    assert float(ada.rt) == -0.5 and float(ada.p) == 0.0  # fell, and clamped at 0
    # Between the two: 70% positive is r_t 0.4, still below the target: p keeps falling
    ada.p = torch.tensor(0.5)
    step(g, SignCritic(torch.tensor([1.0] * 6 + [-1.0] * 2)), real, Record())  # r_t 0.5
    for _ in range(3):
        step(g, SignCritic(torch.tensor([1.0] * 6 + [-1.0] * 2)), real, Record())
    assert float(ada.rt) == 0.5 and float(ada.p) == pytest.approx(0.5 - 0.32)


def test_ada_with_p_0_changes_nothing_and_with_p_1_augments_every_image() -> None:
    torch.manual_seed(0)
    images = torch.ones(64, 1, 28, 28)  # all white: any cutout shows
    off = AdaptiveAugment(["translation", "cutout"], fill=-1.0, p0=0.0)
    assert torch.equal(off(images), images)
    every = AdaptiveAugment(["cutout"], fill=-1.0, p0=1.0)
    changed = every(images).ne(images).flatten(1).any(1)  # (64,)
    assert changed.all()
    half = AdaptiveAugment(["cutout"], fill=-1.0, p0=0.5)
    changed = half(images).ne(images).flatten(1).any(1)
    assert 0 < int(changed.sum()) < 64  # a draw per image

    # In the step: at p = 0 D sees reals and fakes as they are, in both updates
    g = nn.Sequential(nn.Linear(3, 4), nn.Unflatten(1, (1, 2, 2)))
    d = LinearCritic()
    real = torch.rand(8, 1, 2, 2)
    ada_step(AdaptiveAugment(["translation", "cutout"], fill=-1.0))(g, d, real, Record())
    assert torch.equal(d.seen[0], real)
    assert torch.equal(d.seen[1], g(torch.zeros(8, 3)).detach())


def test_ada_state_round_trips_exactly() -> None:
    ada = AdaptiveAugment(["cutout"], interval=3, kimg=0.07)
    for signs in ([1.0, 1, -1], [1.0, 1, 1], [1.0, -1, 1], [1.0, 1, 1], [-1.0, 1, 1]):
        ada.observe(torch.tensor(signs))
    state = ada.state_dict()
    assert state["updates"] == 5 and state["seen"] == 6 and state["signs"] == 4.0
    again = AdaptiveAugment(["cutout"], interval=3, kimg=0.07)
    again.load_state_dict(state)
    assert torch.equal(again.p, ada.p) and again.state_dict() == state
    for a in (ada, again):
        a.observe(torch.tensor([1.0, 1, 1]))
    assert torch.equal(again.p, ada.p) and again.state_dict() == ada.state_dict()


def test_ada_config_is_checked_and_reaches_the_module_step(make_cfg: MakeCfg) -> None:
    for bad in ("stabilize.ada_target=1", "stabilize.ada_target=0", "stabilize.ada_p0=1.5"):
        with pytest.raises(GanError, match=bad.split("=")[0]):
            validate(make_cfg("stabilize.ada=true", bad))
    module = GAN.from_config(make_cfg("stabilize.ada=true"))
    ada = module.gan_step.ada
    assert module.gan_step.augment is ada and ada.ops.policy == ["translation", "cutout"]
    assert (ada.target, ada.interval, ada.kimg, float(ada.p)) == (0.6, 4, 10.0, 0.0)
    module = GAN.from_config(make_cfg("stabilize.ada=true", "stabilize.diffaug=[color]"))
    assert module.gan_step.ada.ops.policy == ["color"]  # diffaug's ops, gated by p
    assert GAN.from_config(make_cfg("stabilize.diffaug=[color]")).gan_step.ada is None


# ---- relativistic pairing loss ----------------------------------------------------------


def test_rpgan_pairs_each_real_with_a_fake() -> None:
    real, fake = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    rp = LOSSES["rpgan"]
    d_loss = (F.softplus(torch.tensor(-1.0)) + F.softplus(torch.tensor(1.0))) / 2
    assert rp.d(real, fake, None).item() == pytest.approx(d_loss.item())
    assert rp.g(fake, real).item() == pytest.approx(d_loss.item())  # symmetric here
    assert rp.g(torch.tensor([3.0]), torch.tensor([0.0])).item() == pytest.approx(
        F.softplus(torch.tensor(-3.0)).item()
    )
    assert rp.g_needs_real and not rp.uses_targets


def test_rpgan_g_update_scores_the_reals_too() -> None:
    d = LinearCritic()
    step, g = _step(d)
    step.loss = LOSSES["rpgan"]
    step(g, d, torch.randn(4, 1, 2, 2), Record())
    assert len(d.seen) == 4  # D update: real, fake; G update: fake, real


# ---- top-k training ----------------------------------------------------------------------


@pytest.mark.parametrize("loss", ["bce", "rpgan"])
def test_topk_teaches_g_only_through_the_fakes_d_rates_highest(loss: str) -> None:
    d = LinearCritic()  # D(x) = <(1, 2, 3, 4), x>
    fakes = nn.Parameter(torch.tensor([0.0, 0.3, -0.1, 0.1]).view(4, 1, 1, 1).repeat(1, 1, 2, 2))
    step = GanStep(LOSSES[loss], SMOOTHING, lambda n: torch.zeros(n, 3), topk=0.5)
    grads: list[Tensor] = []
    losses: list[Tensor] = []

    class Updates(Record):
        def step(self, net: str, loss: Tensor) -> None:
            if net == "g":
                losses.append(loss.detach())
                grads.append(torch.autograd.grad(loss, fakes)[0].flatten(1).abs().sum(1))

    real = torch.zeros(4, 1, 2, 2)
    step(lambda z: fakes + 0 * z.sum(), d, real, Updates())
    # D scores the fakes 0, 3, -1, 1: the top half are the 2nd and the 4th
    assert grads[0][[1, 3]].gt(0).all() and grads[0][[0, 2]].eq(0).all()
    top = torch.tensor([3.0, 1.0])
    expected = LOSSES[loss].g(top, torch.zeros(2) if loss == "rpgan" else None)
    assert losses[0].item() == pytest.approx(expected.item())

    grads.clear()
    GanStep(LOSSES[loss], SMOOTHING, lambda n: torch.zeros(n, 3))(
        lambda z: fakes + 0 * z.sum(), d, real, Updates()
    )
    assert grads[0].gt(0).all()  # off (topk=1): every fake teaches G


def test_topk_config_is_checked_and_reaches_the_module_step(make_cfg: MakeCfg) -> None:
    assert GAN.from_config(make_cfg("stabilize.topk=0.5")).gan_step.topk == 0.5
    for bad in ("0", "1.5"):
        with pytest.raises(GanError, match="stabilize.topk"):
            validate(make_cfg(f"stabilize.topk={bad}"))


# ---- packing (PacGAN) --------------------------------------------------------------------


class PackCritic(nn.Module):
    """D of packed 1x1 images: keeps what it sees, scores the channels' sum."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        return self.w * x.flatten(1).sum(1)  # (B,)


def test_pack_scores_each_run_of_k_images_as_one_in_both_updates() -> None:
    d = PackCritic()
    real = torch.arange(6.0).view(6, 1, 1, 1)  # images 0..5
    fakes = nn.Parameter(-torch.arange(1.0, 7.0).view(6, 1, 1, 1))  # images -1..-6
    record = Record()
    GanStep(LOSSES["bce"], SMOOTHING, lambda n: torch.zeros(n, 3), pack=3)(
        lambda z: fakes + 0 * z.sum(), d, real, record
    )
    real_seen, fake_seen, g_seen = d.seen
    # (6, 1, 1, 1) -> (2, 3, 1, 1): images 0, 1, 2 are the first pack's three channels
    assert real_seen.shape == (2, 3, 1, 1)
    assert real_seen.flatten(1).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert fake_seen.flatten(1).tolist() == [[-1, -2, -3], [-4, -5, -6]]
    assert torch.equal(g_seen, fake_seen)
    # one logit, one target, per pack: D's loss is BCE on the packs' sums
    packs_real, packs_fake = torch.tensor([3.0, 12.0]), torch.tensor([-6.0, -15.0])
    want = LOSSES["bce"].d(packs_real, packs_fake, (torch.ones(2), torch.zeros(2)))
    assert record.losses["d"][0].item() == pytest.approx(want.item())


def test_ada_under_pack_moves_p_by_the_images_d_saw_not_its_logits() -> None:
    g = nn.Sequential(nn.Linear(3, 4), nn.Unflatten(1, (1, 2, 2)))
    real = torch.rand(8, 1, 2, 2)
    ada = AdaptiveAugment(["cutout"], fill=-1.0, target=0.6, interval=4, kimg=0.1)
    step = GanStep(LOSSES["bce"], SMOOTHING, lambda n: torch.zeros(n, 3), augment=ada, pack=2)
    for _ in range(4):  # 4 logits per update (packs of 2), all positive: r_t = 1
        step(g, SignCritic(torch.ones(4)), real, Record())
    # 8 reals x 4 updates / (0.1 kimg x 1000) = 0.32, as unpacked; not 4 logits' 0.16
    assert float(ada.rt) == 1.0 and float(ada.p) == pytest.approx(0.32)


def test_pack_builds_d_for_k_times_the_channels_and_is_checked(make_cfg: MakeCfg) -> None:
    module = GAN.from_config(make_cfg("model=dcgan", "stabilize.pack=2"))
    assert module.gan_step.pack == 2
    assert module.discriminator.net[0].in_channels == 2  # two 1-channel images
    assert module.generator(module.sample_z(4)).shape == (4, 1, 28, 28)
    for bad, problem in (
        (["stabilize.pack=0"], "stabilize.pack"),
        (["stabilize.pack=3", "data.batch_size=32"], "multiple"),
        (["stabilize.pack=2", "condition=projection"], "condition=none"),
    ):
        with pytest.raises(GanError, match=problem):
            validate(make_cfg(*bad))


# ---- EMA ---------------------------------------------------------------------------------


def test_ema_decay_ramps_up_from_the_first_update() -> None:
    ema, param = [torch.zeros(3)], [torch.ones(3)]
    update = ema_update_fn(0.999, warmup=True)
    update(ema, param, torch.tensor(1))  # d = min(0.999, 2 / 11)
    assert ema[0][0].item() == pytest.approx(9 / 11)
    fixed = [torch.zeros(3)]
    ema_update_fn(0.999, warmup=False)(fixed, param, torch.tensor(1))
    assert fixed[0][0].item() == pytest.approx(0.001, rel=1e-4)
    late = [torch.zeros(3)]
    update(late, param, torch.tensor(100_000))  # the ramp has reached `decay`
    assert late[0][0].item() == pytest.approx(0.001, rel=1e-3)


def test_recomputed_bn_stats_are_the_batches_plain_average() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    batches = [(torch.randn(8, 3) + i,) for i in range(3)]
    recompute_bn_stats(net, batches)
    with torch.no_grad():
        means = torch.stack([net[0](x).mean(0) for (x,) in batches])
    assert torch.allclose(net[1].running_mean, means.mean(0), atol=1e-5)
    assert net[1].momentum == 0.1  # restored


def test_ema_generator_bn_stats_follow_its_weights_when_it_samples(make_cfg: MakeCfg) -> None:
    run = build(make_cfg("model=dcgan", "ema.enabled=true"), fast_dev_run=2)
    run.trainer.fit(run.module, datamodule=run.datamodule)
    module = run.module
    ema = module.ema_generator.module
    bn = next(m for m in ema.modules() if isinstance(m, nn.BatchNorm2d))
    module._ema_bn_stale = True
    module.sampling_generator()  # recomputes for the averaged weights
    after = bn.running_mean.clone()
    gen = torch.Generator().manual_seed(module.cfg.metrics.seed)
    z = torch.cat([module.sample_z(256, generator=gen) for _ in range(module.cfg.ema.bn_batches)])
    with torch.no_grad():
        first = ema.net[0](z.view(z.size(0), -1, 1, 1))  # the layer before the first BN
    assert torch.allclose(after, first.mean((0, 2, 3)), atol=1e-4)
    assert int(module.ema_generator.n_averaged) == module.g_updates >= 1  # one per G update


# ---- every stabiliser through the real config -------------------------------------------

FLAGS = {
    "spectral-norm": ["stabilize.spectral_norm=true"],
    "r1-r2-lazy": ["stabilize.r1=1", "stabilize.r2=1", "stabilize.reg_every=2"],
    "diffaug": ["stabilize.diffaug=[translation,cutout]"],
    "rpgan": ["loss=rpgan"],
    "ema": ["ema.enabled=true"],
    "topk": ["stabilize.topk=0.5"],
    "ada": ["stabilize.ada=true", "stabilize.ada_p0=0.5"],
    "pack-r1": ["stabilize.pack=2", "stabilize.r1=1"],
    "all-conditional-d2g1": [
        "loss=rpgan",
        "stabilize.spectral_norm=true",
        "stabilize.r1=1",
        "stabilize.diffaug=[translation,cutout,color]",
        "ema.enabled=true",
        "condition=projection",
        "step_ratio=d2g1",
    ],
}


@pytest.mark.parametrize("flags", FLAGS.values(), ids=FLAGS.keys())
def test_each_stabiliser_trains_in_a_fast_dev_run(make_cfg: MakeCfg, flags: list[str]) -> None:
    cfg = make_cfg("model=dcgan", *flags)
    validate(cfg)
    run = build(cfg, fast_dev_run=2)
    before = [p.detach().clone() for p in run.module.generator.parameters()]
    run.trainer.fit(run.module, datamodule=run.datamodule)
    after = list(run.module.generator.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    labels = [torch.arange(4)] if run.module.num_classes else []
    images = run.module(run.module.sample_z(4), *labels)
    assert images.shape == (4, 1, 28, 28) and torch.isfinite(images).all()


@pytest.mark.slow
def test_after_a_short_run_the_ema_generator_scores_at_least_as_well_as_g(
    make_cfg: MakeCfg, tmp_path: Path
) -> None:
    """The fast recipe at lr 2e-3 for 6 epochs (840 updates) of the real MNIST test split:
    the warmed-up EMA of G, with its BatchNorm statistics, beats or matches G itself on the
    run's own held-out scores (seed 42: val/fid 73 against 77 when measured)."""
    if not (SHARED_MNIST / "MNIST" / "raw").exists():
        pytest.skip("needs ../shared/mnist")
    cfg = make_cfg(
        "experiment=fast_mnist",
        "optimizer.lr=2e-3",  # a noisier G than the recipe's: where averaging pays soonest
        "step_ratio=d1g1",  # as measured (the recipe has since moved to d1g2 and 8 latents)
        "noise.dim=100",
        "trainer.max_epochs=6",
        f"data.root={SHARED_MNIST}",
        "data.split=test",
        "data.download=false",
        "trainer.accelerator=cpu",
        "trainer.enable_progress_bar=false",
        "logger=csv",
        tiny=False,
    )
    cfg.paths.output_dir = str(tmp_path / "run")
    train(cfg)
    module = load_gan(tmp_path / "run" / "checkpoints" / "last.ckpt")
    run = build(cfg)
    run.datamodule.setup("fit")
    real = torch.cat(
        [run.datamodule.on_after_batch_transfer(b, 0)[0] for b in run.datamodule.val_dataloader()]
    )
    m = cfg.metrics
    metrics = GanMetrics(load_or_train(m.root, m.split, m.download, dataset=m.dataset))
    metrics.set_real(to_unit_range(real, "tanh"))
    z = module.sample_z(1000, generator=torch.Generator().manual_seed(m.seed))
    fid = {
        ema: float(metrics.compute(to_unit_range(generate(module, z, ema=ema), "tanh"))["fid"])
        for ema in (False, True)
    }
    assert fid[True] <= fid[False], f"EMA val/fid {fid[True]:.1f} vs G's {fid[False]:.1f}"
