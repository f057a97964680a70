"""Rebuild a trained GAN from what a user hands over: a checkpoint, a run folder, or a
shared generator folder (gan.hub). The one loader of `gan.sample`, `gan.app` and
`gan.export`.

Everything read is data. A checkpoint is read by `torch.load(weights_only=True)`, a
shared folder as JSON and safetensors; the networks it describes are built through
`gan.nets.registry()`. Nothing a file names is imported or called unless the user says
`trust_code=true` (a network of one's own, trained through `model.generator._target_`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gan.errors import GanError, first_line, read_checkpoint
from gan.files import resolve_checkpoint
from gan.options import CKPT_HINT

if TYPE_CHECKING:
    from gan.module import GAN

HINT = CKPT_HINT
# A group a checkpoint lacks did not exist when it was written: it gets the value the
# project then had, where the schema's default has changed since (no EMA G was kept then).
FORMER_DEFAULTS: dict[str, dict[str, Any]] = {
    "ema": {"enabled": False},
    "noise": {"dim": 100},
    "step_ratio": {"name": "d1g1", "g_steps": 1},
    "optimizer": {"lr": 2e-4},
    "perf": {"reuse_fake": False},
}


def check_ckpt(path: Path) -> Path:
    """The checkpoint file or shared folder `path` names (a run folder: its last.ckpt);
    GanError if there is none."""
    from gan import hub

    path = resolve_checkpoint(path)
    if not path.exists():
        raise GanError(f"checkpoint {path} does not exist. {HINT}.")
    if hub.is_folder(path):
        return path
    if path.is_dir():
        raise GanError(
            f"ckpt={path} is a folder without checkpoints/last.ckpt or {hub.WEIGHTS}, not a "
            f"checkpoint. {HINT}, or a folder written by `gan.export format=safetensors`."
        )
    return path


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
    from gan.config import MODULE_GROUPS
    from gan.module import GAN

    unknown = sorted(map(str, set(hparams) - set(MODULE_GROUPS)))
    if unknown:  # `trust_code` among them: only the user gives that, never a file
        raise GanError(
            f"{label} is not a checkpoint this version can rebuild: its hyper_parameters hold "
            f"{', '.join(unknown)}, which are not config groups. {HINT}."
        )
    hparams = {**{k: v for k, v in FORMER_DEFAULTS.items() if k not in hparams}, **hparams}
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


def load_gan(path: Path, trust_code: bool = False) -> GAN:
    """Rebuild the GAN (on the CPU, eval mode) from a checkpoint's or a shared folder's
    config and weights.

    GanError when the file is missing, is not a torch checkpoint, is not one of this
    project's (no `hyper_parameters.model`, or weights that do not fit the model), or names
    a network outside the registry without `trust_code`.
    """
    from gan import hub

    path = check_ckpt(path)
    if hub.is_folder(path):
        return hub.load(path, trust_code)
    ckpt = read_checkpoint(path, str(path), HINT)
    module = rebuild(ckpt["hyper_parameters"], str(path), trust_code)
    try:
        module.load_state_dict(ckpt["state_dict"], strict=True)
    except (RuntimeError, KeyError, TypeError) as e:
        raise GanError(
            f"{path} is not a checkpoint of this project: its weights do not fit the model its "
            f"hyper_parameters describe ({first_line(e)}). {HINT}."
        ) from None
    try:
        module.on_load_checkpoint(ckpt)  # the counters: plain ints in our checkpoints
    except (TypeError, ValueError) as e:
        raise GanError(
            f"{path} holds counters that are not numbers ({first_line(e)}). {HINT}."
        ) from None
    return module.eval()
