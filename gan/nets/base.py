"""The G/D interface every architecture family implements, and class conditioning.

A family's `Generator(latent_dim, ..., **cond)` subclasses `BaseGenerator` and builds
`self.net` from `self.in_dim` inputs (the latent size, plus the label embedding when
conditioned) to `self.channels` output channels. A family's `Discriminator(..., **cond)`
subclasses `BaseDiscriminator` and builds `self.net` from `self.in_channels` input
channels: every layer but the last is D's *features*, the last its *head* (one logit).
Both call `self.attach_condition()` once their `net` exists; with `condition="none"` it
adds nothing, so unconditional networks and their checkpoints are as they always were.

Conditioning (`condition.name`, Mirza & Osindero 2014; Miyato & Koyama 2018; Odena et
al. 2017): G always takes a learned label embedding concatenated to z. D takes the label
    concat      as `embed_dim` learned planes concatenated to its input image;
    projection  as the inner product of a class embedding with its pooled features,
                added to the logit;
    acgan       not at all: an auxiliary head predicts the class from its pooled
                features (`forward(x, labels, aux=True)` returns both outputs);
    tacgan      as acgan, plus a twin head that learns the classes of G's fakes (Gong et
                al. 2019): `forward(x, labels, aux=True)` returns the logit and both heads.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gan.nets import check_images, check_latent_dim
from gan.utils.errors import GanError

CONDITIONS = ("none", "concat", "projection", "acgan", "tacgan")  # `condition.name`
CLASS_HEADS = {"acgan": 1, "tacgan": 2}  # conditions whose D classifies: how many heads


def _check_condition(condition: str, num_classes: int, channels: int) -> None:
    if condition not in CONDITIONS:
        raise GanError(f"condition={condition!r} is unknown: use one of {', '.join(CONDITIONS)}.")
    if condition != "none" and num_classes < 2:
        raise GanError(
            f"condition={condition} needs labelled data with 2 or more classes, but "
            f"num_classes={num_classes}. Use condition=none, or a labelled data set."
        )
    if channels < 1:
        raise GanError(f"data.channels={channels} is invalid: images need at least 1 channel.")


def _embed(embedding: nn.Embedding, labels: Tensor | None, what: str) -> Tensor:
    """Class indices (B,) -> (B, E); soft labels (B, num_classes) mix the class embeddings."""
    if labels is None:
        raise GanError(f"this {what} is class-conditional: pass labels (B,) with the inputs")
    if labels.is_floating_point():
        return labels.to(embedding.weight.dtype) @ embedding.weight
    return embedding(labels)


class BaseGenerator(nn.Module):
    """G: `forward(z, labels=None)`, z (B, latent_dim) -> (B, channels, img_size, img_size)
    in the range of `output`."""

    img_size: int = 28
    output: str = "tanh"

    def __init__(
        self,
        latent_dim: int,
        channels: int = 1,
        condition: str = "none",
        num_classes: int = 0,
        embed_dim: int = 10,
    ) -> None:
        super().__init__()
        check_latent_dim(latent_dim)
        _check_condition(condition, num_classes, channels)
        self.latent_dim, self.channels = latent_dim, channels
        self.condition, self.num_classes = condition, num_classes if condition != "none" else 0
        self.embed_dim = embed_dim if self.num_classes else 0
        self.in_dim = latent_dim + self.embed_dim  # what the family's first layer takes

    def attach_condition(self) -> None:
        self.label_embedding = (
            nn.Embedding(self.num_classes, self.embed_dim) if self.num_classes else None
        )

    def inputs(self, z: Tensor, labels: Tensor | None) -> Tensor:
        """z (B, latent_dim), with the label embedding appended when conditioned: (B, in_dim)."""
        if self.label_embedding is None:
            return z
        return torch.cat([z, _embed(self.label_embedding, labels, "generator").to(z.dtype)], 1)

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        # The conv generators' default: the inputs as a (B, in_dim, 1, 1) map into `self.net`.
        z = self.inputs(z, labels)
        return self.net(z.view(z.size(0), -1, 1, 1))


class BaseDiscriminator(nn.Module):
    """D: `forward(x, labels=None, aux=False)`, images (B, channels, img_size, img_size) ->
    raw logits (B,) (no sigmoid: the loss has it); with aux (acgan, tacgan), also the class
    heads' logits."""

    img_size: int = 28
    family: str = ""  # the `model` option, named in errors

    def __init__(
        self, channels: int = 1, condition: str = "none", num_classes: int = 0, embed_dim: int = 10
    ) -> None:
        super().__init__()
        _check_condition(condition, num_classes, channels)
        self.channels, self.condition = channels, condition
        self.num_classes = num_classes if condition != "none" else 0
        self.embed_dim = embed_dim if condition == "concat" else 0
        self.in_channels = channels + self.embed_dim  # what the family's first layer takes

    def attach_condition(self) -> None:
        """Add the label planes, projection or auxiliary head (after `self.net` exists)."""
        c, k = self.condition, self.num_classes
        self.label_planes = nn.Embedding(k, self.embed_dim) if c == "concat" else None
        self.projection: nn.Embedding | None = None
        self.aux_head: nn.Linear | None = None
        self.twin_head: nn.Linear | None = None
        if c == "projection" or c in CLASS_HEADS:
            width = self.pooled(self._features_probe()).size(1)
            if c == "projection":
                self.projection = nn.Embedding(k, width)
                nn.init.normal_(self.projection.weight, 0.0, 0.02)  # small: starts as plain D
            else:
                self.aux_head = nn.Linear(width, k)
            if c == "tacgan":
                self.twin_head = nn.Linear(width, k)

    def _features_probe(self) -> Tensor:
        was = self.training
        self.eval()  # no BatchNorm statistics change, no dropout draw
        try:
            with torch.no_grad():
                x = torch.zeros(2, self.in_channels, self.img_size, self.img_size)
                return self.net[:-1](x)
        finally:
            self.train(was)

    @staticmethod
    def pooled(h: Tensor) -> Tensor:
        """D's features as one vector per image: a conv map summed over space (Miyato's
        projection D does the same), or a flat layer as it is: (B, F)."""
        return h.flatten(2).sum(2) if h.dim() == 4 else h

    def forward(
        self, x: Tensor, labels: Tensor | None = None, aux: bool = False
    ) -> Tensor | tuple[Tensor, ...]:
        check_images(x, self.img_size, self.family, self.channels)
        if self.condition == "none":
            return self.net(x).view(-1)  # (B,) logits
        if self.label_planes is not None:  # concat: (B, C + E, H, W)
            planes = _embed(self.label_planes, labels, "discriminator").to(x.dtype)
            x = torch.cat([x, planes[:, :, None, None].expand(-1, -1, *x.shape[-2:])], 1)
        h = self.net[:-1](x)  # the features
        logits = self.net[-1](h).view(-1)  # (B,) the head
        if self.projection is not None:
            embedded = _embed(self.projection, labels, "discriminator").to(h.dtype)
            logits = logits + (embedded * self.pooled(h)).sum(1)
        if aux:
            if self.aux_head is None:
                raise GanError(
                    "aux=True needs condition=acgan or tacgan: this D has no auxiliary head"
                )
            pooled = self.pooled(h)
            if self.twin_head is None:
                return logits, self.aux_head(pooled)  # (B,), (B, num_classes)
            return logits, self.aux_head(pooled), self.twin_head(pooled)  # and the twin's
        return logits


def build_nets(cfg: Any, trust_code: bool = False) -> tuple[BaseGenerator, BaseDiscriminator]:
    """G and D from a config's `model` and `condition` nodes, checked against the config.

    Each network's `_target_` is looked up in `gan.nets.registry()` and called with its
    checked arguments: a config read from a checkpoint names classes, never code to import.
    A `_target_` outside the registry (a network of one's own) is imported and built by
    Hydra only with `trust_code=True`.
    """
    from gan.nets import check_nets

    # Only what differs from a plain 1-channel unconditional pair, so that networks of
    # one's own (any nn.Module pair through `model.generator._target_`) need none of it.
    kwargs: dict[str, Any] = {"channels": cfg.model.channels} if cfg.model.channels != 1 else {}
    if cfg.condition.name != "none":
        kwargs |= {
            "condition": cfg.condition.name,
            "num_classes": cfg.condition.num_classes,
            "embed_dim": cfg.condition.embed_dim,
        }
    generator = build_net(cfg.model.generator, "generator", kwargs, trust_code)
    pack = cfg.stabilize.pack  # PacGAN: D eats `pack` images stacked along the channels
    d_kwargs = kwargs | ({"channels": cfg.model.channels * pack} if pack > 1 else {})
    discriminator = build_net(cfg.model.discriminator, "discriminator", d_kwargs, trust_code)
    check_nets(cfg.model, generator, discriminator)
    if cfg.stabilize.spectral_norm:
        spectral_normalize(discriminator)
    return generator, discriminator


TRUST_HINT = "add trust_code=true only if you trust the code it names (see docs/security.md)"
_SCALARS = (bool, int, float, str, type(None))


def build_net(node: Any, role: str, extra: dict[str, Any], trust_code: bool = False) -> nn.Module:
    """One network from its config node (`model.generator`): a registered class with checked
    arguments, or, with `trust_code`, whatever Hydra's `instantiate` makes of the node."""
    from omegaconf import DictConfig, OmegaConf

    key = f"model.{role}"
    spec = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
    if not isinstance(spec, dict):
        raise GanError(f"{key} must be a mapping with a _target_, got {type(spec).__name__}.")
    spec = dict(spec)
    target = spec.pop("_target_", None)
    cls = registered(target, role, trust_code)
    if cls is None:  # trusted code of the user's own
        from hydra.utils import instantiate

        return instantiate(node, **extra)
    return cls(**(check_arguments(cls, spec, key) | extra))  # extra wins, as in instantiate


def registered(target: Any, role: str, trust_code: bool = False) -> type | None:
    """The registered class `model.<role>._target_` names; None for another target when
    `trust_code`, else GanError (one line, naming trust_code=true)."""
    from gan.nets import registry

    cls = registry().get(target) if isinstance(target, str) else None
    if cls is None and not trust_code:
        known = ", ".join(n for n in registry() if n.endswith(role.title()))
        raise GanError(
            f"model.{role}._target_={target!r} is not one of this project's networks ({known}): "
            f"building it would import and run code that the config names. Use a model= "
            f"option, or {TRUST_HINT}."
        )
    return cls


def check_arguments(cls: type, spec: dict[str, Any], key: str) -> dict[str, Any]:
    """`spec` if every entry is a plain argument of `cls` of the annotated type; GanError
    otherwise (Hydra's `_args_`, `_partial_` and friends, nested nodes, unknown names)."""
    import inspect
    from typing import get_type_hints

    params: dict[str, inspect.Parameter] = {}
    hints: dict[str, Any] = {}
    for c in reversed(cls.__mro__[:-1]):  # the family's own parameters over its base's
        init = c.__dict__.get("__init__")
        if init is not None:
            params |= dict(inspect.signature(init).parameters)
            hints |= get_type_hints(init)
    names = [
        n
        for n, p in params.items()
        if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]
    for name, value in spec.items():
        if name.startswith("_") or name not in names:
            raise GanError(
                f"{key}.{name} is not an argument of {cls.__module__}.{cls.__name__} (it takes "
                f"{', '.join(names)}): drop it, or {TRUST_HINT}."
            )
        items = value if isinstance(value, list) else [value]
        want = hints.get(name)
        ok = all(isinstance(v, _SCALARS) for v in items)
        if ok and want in (int, float, bool, str):
            ok = not isinstance(value, list) and (
                isinstance(value, want)
                and (want is bool or not isinstance(value, bool))
                or (want is float and isinstance(value, int) and not isinstance(value, bool))
            )
        if not ok:
            kind = getattr(want, "__name__", "a plain value")
            raise GanError(f"{key}.{name}={value!r} is invalid: it must be {kind}.")
    return spec


def spectral_normalize(net: nn.Module) -> nn.Module:
    """Spectral normalisation (Miyato et al. 2018) of every conv and linear layer of `net`,
    in place: each weight is divided by its largest singular value, estimated by one power
    iteration per training forward pass (torch's parametrization; `_u`/`_v` are buffers,
    so checkpoints keep the estimate)."""
    from torch.nn.utils.parametrizations import spectral_norm

    for module in list(net.modules()):
        if isinstance(module, nn.Conv2d | nn.Linear):
            spectral_norm(module)
    return net
