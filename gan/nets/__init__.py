"""Network architectures: one module per family, each exporting `Generator` and `Discriminator`.

The interface is stated once, in `gan.nets.base` (`BaseGenerator`, `BaseDiscriminator`;
the LightningModule relies on it):

- `Generator(latent_dim, ..., channels=1, condition="none", num_classes=0, embed_dim=10)`;
  class attributes `img_size` (28 or 64) and `output` ("tanh" -> images in (-1, 1),
  "sigmoid" -> images in (0, 1)). `forward(z, labels=None)`: (B, latent_dim) ->
  (B, channels, img_size, img_size).
- `Discriminator(..., channels=1, condition="none", num_classes=0, embed_dim=10)`; class
  attributes `img_size` and `family`; `forward(x, labels=None, aux=False)`: images ->
  raw logits (B,), no sigmoid (the loss applies it); with `aux` (acgan, tacgan) also class logits.

Every family-specific kwarg has a default, so `Generator(latent_dim)` / `Discriminator()`
build the tutorial's network (dcgan's G: the default run's half width, 32; the tutorial's
is 64). Bad arguments and wrongly sized images raise `GanError`.

Families: mlp (TensorFlow), dcgan (28x28 DCGAN), dcgan64 (DCGAN paper / MXNet),
paddle (PaddlePaddle book), upsample (Keras, Atienza).

`registry()` maps each family's `_target_` name (`gan.nets.dcgan.Generator`) to its class:
networks are rebuilt from a config or a checkpoint through it, never by importing
whatever a file names (`gan.nets.base.build_nets`).
"""

import importlib
from functools import cache
from typing import Any

from torch import Tensor, nn

from gan.utils.errors import GanError

ARCHITECTURES = ("mlp", "dcgan", "dcgan64", "paddle", "upsample")
ROLES = ("Generator", "Discriminator")


@cache
def registry() -> dict[str, type[nn.Module]]:
    """`_target_` name -> network class, for every family's Generator and Discriminator."""
    found = {}
    for family in ARCHITECTURES:
        module = importlib.import_module(f"gan.nets.{family}")  # our own modules, by a fixed list
        for role in ROLES:
            found[f"gan.nets.{family}.{role}"] = getattr(module, role)
    return found


def init_dcgan_weights(module: nn.Module) -> None:
    """DCGAN paper init for every layer under `module`: conv/linear weights ~ N(0, 0.02),
    BatchNorm weights ~ N(1, 0.02), all biases 0. Call it once on the root module."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def init_xavier_weights(module: nn.Module) -> None:
    """Keras', TensorFlow's and Fluid's default init for every layer under `module`:
    Xavier-uniform (Glorot) conv/linear weights, zero biases. BatchNorm keeps 1 and 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def check_latent_dim(latent_dim: int) -> None:
    """Raise `GanError` unless the latent size is a positive int."""
    if isinstance(latent_dim, bool) or not isinstance(latent_dim, int) or latent_dim < 1:
        raise GanError(
            f"noise.dim must be a positive integer (got {latent_dim!r}); "
            "set noise.dim=100 (the usual latent size) or any value >= 1"
        )


def check_positive(model: str, key: str, value: int) -> None:
    """Raise `GanError` unless a width such as `base_channels` is a positive int."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise GanError(
            f"model '{model}': model.{key} must be a positive integer (got {value!r}); "
            f"set model.{key} to a value >= 1 or drop it to use the default"
        )


def check_dropout(model: str, p: float) -> None:
    """Raise `GanError` unless the dropout probability lies in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= p < 1.0:
        raise GanError(
            f"model '{model}': model.dropout must be in [0, 1) (got {p!r}); "
            "set e.g. model.dropout=0.4"
        )


def check_images(x: Tensor, img_size: int, model: str, channels: int = 1) -> None:
    """Raise `GanError` unless `x` is a batch of `channels`-channel img_size x img_size images."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise GanError(
            f"model '{model}' expects images of shape (B, {channels}, {img_size}, {img_size}) "
            f"but got shape {tuple(x.shape)}"
        )
    h, w = x.shape[-2:]
    if h != img_size or w != img_size:
        msg = (
            f"model '{model}' expects {img_size}x{img_size} images but got {h}x{w}; "
            f"set data.img_size={img_size}"
        )
        alt = {28: "dcgan", 64: "dcgan64"}.get(h) if h == w else None
        if alt is not None:
            msg += f" or pick a {h}x{w} model such as model={alt}"
        raise GanError(msg)


def check_nets(model_cfg: Any, generator: nn.Module, discriminator: nn.Module) -> None:
    """GanError unless G and D make and eat `model.img_size` images and G ends in `model.output`."""
    size = model_cfg.img_size
    for net in (generator, discriminator):
        if getattr(net, "img_size", size) != size:
            raise GanError(
                f"model.img_size={size} but {type(net).__module__}.{type(net).__name__} "
                f"works on {net.img_size}x{net.img_size} images; set model.img_size={net.img_size}."
            )
    if getattr(generator, "output", model_cfg.output) != model_cfg.output:
        raise GanError(
            f"model.output={model_cfg.output} but the generator ends in {generator.output}; "
            f"set model.output={generator.output}."
        )
