"""A GAN from the plain config groups a file holds (a checkpoint's `hyper_parameters`, a
shared folder's config.json): checked to be this project's groups with plain values, with
the values of their time for groups older files lack, and networks from the registry only
(`trust_code=true` aside). Used by gan.training.checkpoints and gan.training.hub."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gan.utils.errors import GanError, first_line
from gan.utils.options import CKPT_HINT as HINT

if TYPE_CHECKING:
    from gan.training.module import GAN

MAX_LATENT = 4096  # latents a file may ask for: 8 and 100 are the ones in use
# A group a checkpoint lacks did not exist when it was written: it gets the value the
# project then had, where the schema's default has changed since (no EMA G was kept then).
FORMER_DEFAULTS: dict[str, dict[str, Any]] = {
    "ema": {"enabled": False},
    "noise": {"dim": 100},
    "step_ratio": {"name": "d1g1", "g_steps": 1},
    "optimizer": {"lr": 2e-4},
    "perf": {"reuse_fake": False},
}


def plain_values(node: Any, where: str) -> None:
    """GanError if a config read from a file holds an interpolation (`${...}`): this
    project saves resolved configs, and a resolver could read the environment."""
    if isinstance(node, dict):
        for k, v in node.items():
            plain_values(v, f"{where}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            plain_values(v, f"{where}[{i}]")
    elif isinstance(node, str) and "${" in node:
        raise GanError(f"{where}={node!r} is an interpolation: a saved config holds plain values.")


def rebuild(hparams: dict[str, Any], label: str, trust_code: bool = False) -> GAN:
    """The GAN (untrained weights) that a file's config groups describe; GanError, naming
    `label`, when they are not this project's groups or do not build."""
    from gan.training.config import MODULE_GROUPS
    from gan.training.module import GAN

    unknown = sorted(map(str, set(hparams) - set(MODULE_GROUPS)))
    if unknown:  # `trust_code` among them: only the user gives that, never a file
        raise GanError(
            f"{label} is not a checkpoint this version can rebuild: its hyper_parameters hold "
            f"{', '.join(unknown)}, which are not config groups. {HINT}."
        )
    hparams = {**{k: v for k, v in FORMER_DEFAULTS.items() if k not in hparams}, **hparams}
    dim = (
        (hparams.get("noise") or {}).get("dim", 0) if isinstance(hparams.get("noise"), dict) else 0
    )
    if isinstance(dim, int) and dim > MAX_LATENT:
        raise GanError(
            f"{label} has noise.dim={dim}: more latents than any GAN here uses ({MAX_LATENT})."
        )
    try:
        plain_values(hparams, "hyper_parameters")
        return GAN(trust_code=trust_code, **hparams)
    except GanError as e:
        raise GanError(f"{label} cannot be rebuilt: {e}") from None
    except Exception as e:  # wrong types, unknown keys: written by other code
        raise GanError(
            f"{label} is not a checkpoint this version can rebuild: its hyper_parameters fail "
            f"({first_line(e)}). {HINT}."
        ) from None
