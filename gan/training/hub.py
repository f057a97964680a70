"""The shareable generator: a folder in the Hugging Face layout that loads without unpickling.

    python -m gan.export ckpt=outputs/2024-05-01/12-00-00 format=safetensors out=digits-gan
    python -m gan.sample ckpt=digits-gan             # gan.app and gan.tools.export take it too

    digits-gan/
        model.safetensors   G's weights, and its EMA copy's when the run kept one
        config.json         the module's config groups (what `GAN(**groups)` takes)
        README.md           a short model card: what it is and how to draw from it

safetensors holds tensors and nothing else, and config.json is JSON: reading the folder
runs no code. The networks are rebuilt through `gan.nets.registry()` (a custom network
needs `trust_code=true`), and the weights must fit them exactly. The discriminator is not
shared: a loaded folder draws, measures and exports, but does not resume training.
The layout is the Hub's, so `huggingface_hub.upload_folder` can publish it; nothing here
uploads or downloads anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gan.training.module import GAN

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CARD = "README.md"
FILES = (WEIGHTS, CONFIG, CARD)
FORMAT = "gan-generator"  # config.json's "format": what wrote the folder
VERSION = 1
SHARED = ("generator.", "ema_generator.")  # the state_dict keys the folder holds
MAX_CONFIG_BYTES = 1_000_000  # a config.json is a few kB: anything larger is not one of ours


def shared_state(module: GAN) -> dict[str, Any]:
    """The tensors a folder holds: G's and the EMA G's, contiguous, on the CPU."""
    return {
        k: v.detach().cpu().contiguous()
        for k, v in module.state_dict().items()
        if k.startswith(SHARED)
    }


def save(module: GAN, folder: Path) -> None:
    """Write the folder's three files into `folder` (which exists), each atomically."""
    from safetensors.torch import save_file

    from gan.training.config import to_dict
    from gan.utils.files import atomic_write

    config = {
        "format": FORMAT,
        "version": VERSION,
        "iteration": module.iteration,
        "ema": module.ema_generator is not None,
        "hyper_parameters": to_dict(module.cfg),
    }
    metadata = {"format": "pt", "producer": FORMAT}  # "pt": what transformers' loaders expect
    atomic_write(folder / WEIGHTS, lambda tmp: save_file(shared_state(module), tmp, metadata))
    text = json.dumps(config, indent=2) + "\n"
    atomic_write(folder / CONFIG, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    atomic_write(folder / CARD, lambda tmp: tmp.write_text(card(module), encoding="utf-8"))


def card(module: GAN) -> str:
    """A short model card (README.md): what the generator is and how to draw from it."""
    cfg = module.cfg
    cond = (
        f", conditional on {cfg.condition.num_classes} classes ({cfg.condition.name})"
        if cfg.condition.name != "none"
        else ""
    )
    weights = "G and its EMA copy (drawn from by default)" if module.ema_generator else "G"
    return (
        f"---\nlibrary_name: gan\ntags: [gan, {cfg.model.name}]\n---\n\n"
        f"# A `{cfg.model.name}` generator\n\n"
        f"{cfg.model.img_size}x{cfg.model.img_size} images with {cfg.model.channels} "
        f"channel(s) from {cfg.noise.dim} {cfg.noise.dist} latents{cond}, after "
        f"{module.iteration:,} training iterations. `model.safetensors` holds {weights}; "
        f"`config.json` the settings it was trained with.\n\n"
        "```bash\npython -m gan.sample ckpt=<this folder> n=64 out=samples.png\n```\n"
    )
