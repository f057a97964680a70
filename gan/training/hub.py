"""The shareable generator: a folder in the Hugging Face layout that loads without unpickling.

    python -m gan.export ckpt=outputs/2024-05-01/12-00-00 format=safetensors out=digits-gan
    python -m gan.sample ckpt=digits-gan             # gan.app and gan.export take it too

    digits-gan/
        model.safetensors   G's weights, and its EMA copy's when the run kept one
        config.json         the module's config groups (what `GAN(**groups)` takes), and
                            the truncation ψ to draw with (`gan.export truncation=...`)
        README.md           a short model card: what it is and how to draw from it

safetensors holds tensors and nothing else, and config.json is JSON: reading the folder
runs no code. The networks are rebuilt through `gan.nets.registry()` (a custom network
needs `trust_code=true`), and the weights must fit them exactly. The discriminator is not
shared: a loaded folder draws, measures and exports, but does not resume training.
A folder exported with `truncation=ψ` records ψ in config.json ("truncation"; version 2):
`gan.sample`, `gan.export` and `gan.app` draw with it unless told otherwise, and a version
of gan that predates ψ refuses the folder rather than drawing at ψ = 1. At ψ = 1 the folder
stays version 1, readable by every version. The layout is the Hub's, so
`huggingface_hub.upload_folder` can publish it; nothing here uploads or downloads anything.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gan.training.rebuild import rebuild
from gan.utils.errors import GanError, first_line
from gan.utils.options import check_truncation

if TYPE_CHECKING:
    from gan.training.module import GAN

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
FILES = (WEIGHTS, CONFIG, CARD)
FORMAT = "gan-generator"  # config.json's "format": what wrote the folder
VERSION = 2  # 2: "truncation" (a ψ != 1 that readers must apply); 1: no ψ, drawn at 1.0
SHARED = ("generator.", "ema_generator.")  # the state_dict keys the folder holds
MAX_CONFIG_BYTES = 1_000_000  # a config.json is a few kB: anything larger is not one of ours


def shared_state(module: GAN) -> dict[str, Any]:
    """The tensors a folder holds: G's and the EMA G's, contiguous, on the CPU."""
    return {
        k: v.detach().cpu().contiguous()
        for k, v in module.state_dict().items()
        if k.startswith(SHARED)
    }


def save(module: GAN, folder: Path, truncation: float = 1.0) -> None:
    """Write the folder's three files into `folder` (which exists), each atomically;
    `truncation`: the ψ that loaders draw with (1.0: none, and a version-1 folder)."""
    from safetensors.torch import save_file

    from gan.training.config import to_dict
    from gan.utils.files import atomic_write

    psi = check_truncation(truncation)
    config = {
        "format": FORMAT,
        "version": VERSION if psi != 1.0 else 1,
        "iteration": module.iteration,
        "ema": module.ema_generator is not None,
        **({"truncation": psi} if psi != 1.0 else {}),
        "hyper_parameters": to_dict(module.cfg),
    }
    metadata = {"format": "pt", "producer": FORMAT}  # "pt": what transformers' loaders expect
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(shared_state(module), tmp, metadata))
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(folder / CONFIG, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    text = card(module, psi)
    atomic_write(folder / CARD, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def card(module: GAN, truncation: float = 1.0) -> str:
    """A short model card (README.md): what the generator is and how to draw from it."""
    cfg = module.cfg
    cond = (
        f", conditional on {cfg.condition.num_classes} classes ({cfg.condition.name})"
        if cfg.condition.name != "none"
        else ""
    )
    weights = "G and its EMA copy (drawn from by default)" if module.ema_generator else "G"
    truncated = (
        f" Drawn with the truncation trick at ψ = {truncation:g} (latents z -> mean + ψ (z - "
        f"mean)), as config.json records; `truncation=1` draws without it."
        if truncation != 1.0
        else ""
    )
    return (
        f"---\nlibrary_name: gan\ntags: [gan, {cfg.model.name}]\n---\n\n"
        f"# A `{cfg.model.name}` generator\n\n"
        f"{cfg.model.img_size}x{cfg.model.img_size} images with {cfg.model.channels} "
        f"channel(s) from {cfg.noise.dim} {cfg.noise.dist} latents{cond}, after "
        f"{module.iteration:,} training iterations. `model.safetensors` holds {weights}; "
        f"`config.json` the settings it was trained with.{truncated}\n\n"
        "```bash\npython -m gan.sample ckpt=<this folder> n=64 out=samples.png\n```\n"
    )


# ---- reading a shared folder ----


def is_folder(path: Path) -> bool:
    """True if `path` is a folder holding a shared generator (its model.safetensors)."""
    return path.is_dir() and (path / WEIGHTS).is_file()


def read_config(folder: Path) -> dict[str, Any]:
    """config.json's hyper_parameters, checked to be this project's plain config groups."""
    path = folder / CONFIG
    hint = "Pass a folder written by `python -m gan.export format=safetensors`"
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise GanError(f"{path} is {size:,} bytes, not a generator's config. {hint}.")
        data = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise GanError(f"{path} is nested too deeply to be a config. {hint}.") from None
    except FileNotFoundError:
        raise GanError(f"{folder} has {WEIGHTS} but no {CONFIG}. {hint}.") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise GanError(f"{path} is not readable JSON ({first_line(e)}). {hint}.") from None
    hparams = data.get("hyper_parameters") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(hparams, dict):
        raise GanError(f"{path} is not a config written by this project. {hint}.")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
        raise GanError(
            f"{path} has version={version!r}; this version of gan reads versions 1 to "
            f"{VERSION}. Update gan, or export the generator again."
        )
    psi = data.get("truncation", 1.0)
    if isinstance(psi, bool) or not isinstance(psi, (int, float)) or not 0 <= psi < math.inf:
        raise GanError(f"{path} has truncation={psi!r}, not a number >= 0. {hint}.")
    return data


def recorded_truncation(path: Path) -> float:
    """The ψ a shared folder records (config.json's "truncation"); 1.0 for a checkpoint
    file, or a folder that records none."""
    if not is_folder(path):
        return 1.0
    return float(read_config(path).get("truncation", 1.0))


def load_folder(folder: Path, trust_code: bool = False) -> GAN:
    """The GAN (on the CPU, eval mode) from a shared folder: G and the EMA G exactly as
    exported; D stays at its initial weights (it is not shared). GanError on a bad folder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    data = read_config(folder)
    module = rebuild(data["hyper_parameters"], str(folder / CONFIG), trust_code)
    path = folder / WEIGHTS
    try:
        state = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise GanError(
            f"{path} is not a readable safetensors file ({first_line(e)}): a copy cut short? "
            f"Export the generator again."
        ) from None
    want = shared_state(module)
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    wrong = sorted(
        k
        for k in set(want) & set(state)
        if state[k].shape != want[k].shape
        or state[k].dtype != want[k].dtype
        or (state[k].is_floating_point() and not bool(state[k].isfinite().all()))
    )
    if missing or extra or wrong:
        what = (
            f"missing {missing[0]}"
            if missing
            else f"unexpected {extra[0]}"
            if extra
            else f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, dtype "
            f"{state[wrong[0]].dtype} or non-finite values"
        )
        raise GanError(
            f"{path} does not fit the generator its {CONFIG} describes ({what}): the two "
            f"files come from different exports. Export the generator again."
        )
    module.load_state_dict(state, strict=False)  # D is not in the folder
    iteration = data.get("iteration", 0)
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise GanError(f"{folder / CONFIG} has iteration={iteration!r}: not a count of iterations.")
    module.on_load_checkpoint({"gan_iteration": iteration})
    return module.eval()
