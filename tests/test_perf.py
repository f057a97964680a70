"""The speed options: fused optimizers, bf16/16-mixed, channels_last, torch.compile.

Each must train and leave a checkpoint that samples like any other; none may change
what the step computes (clipping under a GradScaler included).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from lightning.pytorch.plugins import MixedPrecision
from omegaconf import DictConfig

from gan.tools.sample import load_gan
from gan.training.module import GAN
from gan.training.run import train
from tests.helpers import adam_steps, build, fit

MakeCfg = Callable[..., DictConfig]


def grad_norm(opt: torch.optim.Optimizer) -> float:
    grads = [p.grad for g in opt.param_groups for p in g["params"] if p.grad is not None]
    return torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(g) for g in grads])
    ).item()


def test_adam_and_sgd_are_fused_rmsprop_is_foreach(make_cfg: MakeCfg) -> None:
    for name, fused in (("adam", True), ("sgd", True), ("rmsprop", False)):
        module, _ = build(make_cfg(f"optimizer={name}"))
        for opt in module.configure_optimizers():
            assert bool(opt.defaults.get("fused")) is fused, name
            assert bool(opt.defaults.get("foreach")) is not fused, name


@pytest.mark.parametrize("clip", [None, 1e-3])
def test_16_mixed_clips_the_unscaled_gradients(make_cfg: MakeCfg, tmp_path, clip) -> None:
    # fp16 autocast with a GradScaler, as 16-mixed on a GPU, here on the CPU. The loss is
    # scaled by 65,536: clipping must see the gradients after the scaler unscales them.
    over = [f"optimizer.clip_norm={clip}"] if clip else []
    module, dm = build(make_cfg("model=mlp", "metrics.enabled=false", *over))
    before = [p.clone() for p in module.parameters()]
    norms: list[float] = []
    clip_then_record = module.on_before_optimizer_step

    def hook(opt: torch.optim.Optimizer) -> None:
        clip_then_record(opt)
        norms.append(grad_norm(opt))

    module.on_before_optimizer_step = hook  # type: ignore[method-assign]
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    trainer = fit(
        module,
        dm,
        batches=4,
        tmp_path=str(tmp_path),
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
    )
    assert trainer.precision == "16-mixed"
    opts = [o.optimizer for o in module.optimizers()]
    # Lightning cannot clip gradients that a fused optimizer unscales in its own step
    assert all(bool(o.defaults.get("fused")) is (clip is None) for o in opts)
    if clip:  # (without clipping, a fused step unscales inside the kernel, after this hook)
        finite = [n for n in norms if n == n and n != float("inf")]  # overflows are skipped
        assert finite, "every step overflowed: the scaler never let an update through"
        assert all(n == pytest.approx(clip, rel=1e-3) for n in finite)
    moved = [not torch.equal(a, b) for a, b in zip(before, module.parameters())]
    assert any(moved), "no update got through the scaler"
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert all(p.dtype == torch.float32 for p in module.parameters())


def test_fast_cpu_settings_train_and_sample(make_cfg: MakeCfg) -> None:
    # The README's fast CPU line, through the real entry, then sampled from its checkpoint.
    cfg = make_cfg(
        "model=dcgan",
        "trainer.precision=bf16-mixed",
        "perf.channels_last=true",
        "perf.reuse_fake=true",
        "trainer.max_epochs=1",
        "metrics.enabled=false",
    )
    seen: list[tuple[torch.dtype, bool, torch.dtype]] = []

    def spy(net: torch.nn.Module, args: tuple[torch.Tensor], out: torch.Tensor) -> None:
        if net.training and torch.is_grad_enabled():  # the training step, not the grids
            x = args[0]
            seen.append((x.dtype, x.is_contiguous(memory_format=torch.channels_last), out.dtype))

    setup = GAN.setup

    def setup_and_spy(self: GAN, stage: str) -> None:
        setup(self, stage)
        self.discriminator.register_forward_hook(spy)
        conv = next(
            m
            for m in self.generator.modules()
            if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)
        )
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(GAN, "setup", setup_and_spy)
        train(cfg)
    assert seen, "D never ran in a training step"
    reals = [s for s in seen if s[0] == torch.float32]  # the real images come in as fp32
    assert reals and all(cl for _, cl, _ in reals), "real batches reach D channels_last"
    assert all(out == torch.bfloat16 for *_, out in seen), "D runs under bf16 autocast"
    module = load_gan(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
    assert all(p.dtype == torch.float32 for p in module.parameters())  # master weights
    images = module(module.sample_z(4))
    assert images.shape == (4, 1, 28, 28) and torch.isfinite(images).all()


@pytest.mark.slow
def test_compile_trains_and_saves_plain_weights(make_cfg: MakeCfg, tmp_path: Path) -> None:
    # torch.compile of G and D (tens of seconds on a 2-core CPU): the step runs the
    # compiled nets, and checkpoints keep the plain networks' keys, so they load anywhere.
    cfg = make_cfg("model=mlp", "perf.compile=true", "metrics.enabled=false")
    module, dm = build(cfg)
    trainer = fit(module, dm, batches=2, tmp_path=str(tmp_path))
    assert isinstance(module._g, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(module._d, torch._dynamo.eval_frame.OptimizedModule)
    opt_g, opt_d = (o.optimizer for o in module.optimizers())
    r = cfg.step_ratio
    assert (adam_steps(opt_d), adam_steps(opt_g)) == (2 * r.d_steps, 2 * r.g_steps)
    path = tmp_path / "compiled.ckpt"
    trainer.save_checkpoint(path)
    state = torch.load(path, weights_only=False)["state_dict"]
    assert not any("_orig_mod" in k for k in state)
    plain = load_gan(path)
    z = torch.zeros(1, cfg.noise.dim)
    assert torch.equal(plain(z), module.eval().generator(z))


def test_compile_mode_reaches_torch_compile(make_cfg: MakeCfg, monkeypatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr(torch, "compile", lambda net, mode: seen.append(mode) or net)
    module, _ = build(
        make_cfg("perf.compile=true", "perf.compile_mode=reduce-overhead", "metrics.enabled=false")
    )
    module.setup("fit")
    assert seen == ["reduce-overhead", "reduce-overhead"]  # G and D
