"""Checkpoints, read and resolved in one place: which file a `ckpt=`/`ckpt_path=` names
(a run folder, Lightning's `last`/`best`/`hpc`), reading it as data, checking that a run can
resume from it, and loading the GAN from a checkpoint (gan.training.rebuild builds it) or
a shared generator folder (read by gan.training.hub). The one loader of `gan.sample`,
`gan.app`, `gan.export`, resume and the NaN rollback.

Everything read is data. A checkpoint is read by `torch.load(weights_only=True)`, a
shared folder as JSON and safetensors; the networks it describes are built through
`gan.nets.registry()`. Nothing a file names is imported or called unless the user says
`trust_code=true` (a network of one's own, trained through `model.generator._target_`).
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gan.training.config import module_config, to_dict
from gan.training.hub import WEIGHTS, is_folder, load_folder
from gan.training.rebuild import rebuild
from gan.utils.errors import GanError, first_line
from gan.utils.options import CKPT_HINT

if TYPE_CHECKING:
    import lightning as L

    from gan.training.module import GAN

HINT = CKPT_HINT


def check_ckpt(path: Path) -> Path:
    """The checkpoint file or shared folder `path` names (a run folder: its last.ckpt);
    GanError if there is none."""
    path = resolve_checkpoint(path)
    if not path.exists():
        raise GanError(f"checkpoint {path} does not exist. {HINT}.")
    if is_folder(path):
        return path
    if path.is_dir():
        raise GanError(
            f"ckpt={path} is a folder without checkpoints/last.ckpt or {WEIGHTS}, not a "
            f"checkpoint. {HINT}, or a folder written by `gan.export format=safetensors`."
        )
    return path


def load_gan(path: Path, trust_code: bool = False) -> GAN:
    """Rebuild the GAN (on the CPU, eval mode) from a checkpoint's or a shared folder's
    config and weights.

    GanError when the file is missing, is not a torch checkpoint, is not one of this
    project's (no `hyper_parameters.model`, or weights that do not fit the model), or names
    a network outside the registry without `trust_code`.
    """
    path = check_ckpt(path)
    if is_folder(path):
        return load_folder(path, trust_code)
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


# ---- paths: which file a checkpoint argument names ----

LIGHTNING_NAMES = ("last", "best", "hpc", "registry")  # checkpoints Lightning finds itself


def is_registry(name: str) -> bool:
    """Lightning's model-registry names: `registry` or `registry:<model>` (any case)."""
    return name.lower() == "registry" or name.lower().startswith("registry:")


def resolve_lightning_name(name: str, checkpoints: Path, run: Path) -> Path:
    """The file that Lightning's `ckpt_path=<name>` stands for in this run; GanError if none.

    `checkpoints` is the run's checkpoint folder, `run` the run folder. As Lightning picks:
    `last` the newest `last.ckpt` (or `last-v<N>.ckpt`) there; `best` the one other
    checkpoint there (ModelCheckpoint keeps one best; with several, GanError names them);
    `hpc` the highest `hpc_ckpt_<N>.ckpt` in the run folder. `registry` downloads from
    Lightning's model registry: refused, since nothing could check the file first.
    """
    fresh = "drop ckpt_path to start a new run"
    named = "ckpt_path=<run>/checkpoints/last.ckpt, or hydra.run.dir=<run> ckpt_path=last"
    if is_registry(name):
        raise GanError(
            f"ckpt_path={name} would download a checkpoint from Lightning's model registry, "
            f"which this project does not use. Download the file and pass ckpt_path=<file>."
        )
    ckpts = sorted(checkpoints.glob("*.ckpt")) if checkpoints.is_dir() else []
    last = [p for p in ckpts if re.fullmatch(r"last(-v?\d+)?", p.stem)]
    if name == "last":
        if not last:
            raise GanError(
                f"ckpt_path=last: {checkpoints} holds no last.ckpt, so there is nothing to "
                f"resume. Name the run to resume ({named}), or {fresh}."
            )
        return max(last, key=lambda p: p.stat().st_mtime_ns)
    if name == "best":
        best = [p for p in ckpts if p not in last]
        if len(best) != 1:
            some = ", ".join(p.name for p in best[:3]) or "none"
            raise GanError(
                f"ckpt_path=best: {checkpoints} holds {len(best)} checkpoints besides last.ckpt "
                f"({some}), not one best. Pass the file: ckpt_path=<run>/checkpoints/<file>.ckpt."
            )
        return best[0]
    if name == "hpc":
        numbered = [
            (int(m.group(1)), p)
            for p in (run.glob("hpc_ckpt_*.ckpt") if run.is_dir() else [])
            if (m := re.fullmatch(r"hpc_ckpt_(\d+)\.ckpt", p.name))
        ]
        if not numbered:
            raise GanError(
                f"ckpt_path=hpc: {run} holds no hpc_ckpt_<N>.ckpt (SLURM's requeue checkpoint). "
                f"Pass the checkpoint: {named}."
            )
        return max(numbered)[1]
    raise ValueError(f"not one of Lightning's checkpoint names: {name!r}")


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint path as given, or a run folder's `checkpoints/last.ckpt`.

    `<run>` and `<run>/checkpoints` both resolve to `<run>/checkpoints/last.ckpt` when it
    exists; anything else is returned as is, for the caller's own checks.
    """
    path = Path(path).expanduser()
    for candidate in (path / "checkpoints" / "last.ckpt", path / "last.ckpt"):
        if path.is_dir() and candidate.is_file():
            return candidate
    return path


def checkpoint_dir(trainer: L.Trainer) -> Path:
    """Where this run's checkpoints go: ModelCheckpoint's folder, else `<run>/checkpoints`."""
    cb = trainer.checkpoint_callback
    if cb is not None and getattr(cb, "dirpath", None):
        return Path(cb.dirpath)
    return Path(trainer.default_root_dir) / "checkpoints"


# ---- reading a checkpoint as data ----


def read_checkpoint(
    path: Path, label: str, hint: str, corrupt_hint: str | None = None
) -> dict[str, Any]:
    """The dict in a Lightning checkpoint of this project's GAN; GanError otherwise.

    `label` names the file in messages (`ckpt_path=<path>`), `hint` says what to pass
    instead and `corrupt_hint` what to do about a truncated file (default: `hint`).
    Checks, in order: the file can be read; torch.save wrote it; torch.load reads it with
    weights_only (a checkpoint is data: nothing in it runs code); it holds
    `state_dict` and `hyper_parameters.model`. The caller checks that the path exists.
    """
    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError as e:
        raise GanError(f"cannot read {label} ({e.strerror or e}). {hint}.") from None
    if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):  # zip, or a legacy pickle
        raise GanError(
            f"{label} is not a checkpoint: it is not a file written by torch.save "
            f"(a text file?). {hint}."
        )
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # a pickle of objects beyond tensors and plain values
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        what = f" such as {found.group(1)}" if found else ""
        raise GanError(
            f"{label} is not a checkpoint of this project: it holds Python objects{what}, "
            f"which are not loaded (unpickling them could run code). {hint}."
        ) from None
    except Exception as e:  # truncated or corrupt: all the same to the user
        raise GanError(
            f"{label} is not a readable checkpoint: torch.load failed ({first_line(e)}): the "
            f"file is truncated or corrupt (a copy cut short?). {corrupt_hint or hint}."
        ) from None
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if (
        isinstance(ckpt, dict)
        and "state_dict" in ckpt
        and isinstance(hparams, dict)
        and isinstance(hparams.get("model"), dict)
    ):
        return ckpt
    if not isinstance(ckpt, dict):
        what = f"a {type(ckpt).__name__}"
    elif ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        what = "a plain state_dict (weights without the config to build the model)"
    elif "state_dict" in ckpt:
        what = "a Lightning checkpoint of another module (no hyper_parameters.model)"
    else:
        keys = ", ".join(map(str, list(ckpt)[:4])) or "nothing"
        what = f"a dict with keys {keys}, not a Lightning checkpoint"
    raise GanError(f"{label} is not a checkpoint of this project: it is {what}. {hint}.")


# ---- resuming: the checkpoint fits this run ----

RESUME_HINT = (
    "Resume with ckpt_path=<run>/checkpoints/last.ckpt, a file written by `python -m gan.train`"
)


def _flatten(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}.{k}"))
        return out
    return {prefix: node}


def _run_config_hint(path: Path) -> str:
    config = path.parent.parent / "config.yaml"  # <run>/checkpoints/x.ckpt -> <run>/config.yaml
    return f" (see {config})" if config.is_file() else ""


# The stabilisers that change D's weights' shapes or names: a resume must keep them.
D_SHAPING = ("pack", "spectral_norm")


def check_resume_checkpoint(
    path: str | os.PathLike[str],
    expected_model_cfg: dict[str, Any],
    ema: bool | None = None,
    condition: dict[str, Any] | None = None,
    stabilize: dict[str, Any] | None = None,
) -> None:
    """GanError unless `path` is a checkpoint of this project that this run can resume from.

    `path` may also be a run folder (its `checkpoints/last.ckpt` is checked) or one of
    Lightning's names (`last`, `best`, ...: not checked).

    `expected_model_cfg` is this run's resolved `model` node (`to_dict(cfg.model)`); the
    checkpoint's `hyper_parameters.model` must match it (architecture, sizes, latent size).
    With `condition` (this run's `condition` node), the class conditioning must match too;
    with `stabilize`, the stabilisers that shape D's weights (`D_SHAPING`: packing, spectral
    normalisation).
    With `ema` (this run's `ema.enabled`), the checkpoint must hold EMA weights exactly
    when it is true. Checks, in order: the file exists; torch.save wrote it; torch.load can
    read it; it holds a GAN of this project; same architecture; same EMA setting.
    """
    if str(path) in LIGHTNING_NAMES:
        return  # Lightning's business
    path = resolve_checkpoint(path)  # a run folder: its last checkpoint
    if not path.exists():
        raise GanError(f"ckpt_path={path} does not exist. {RESUME_HINT}.")
    if path.is_dir():
        found = sorted(path.glob("*.ckpt"))
        hint = f"Pass ckpt_path={found[-1]}" if found else RESUME_HINT
        raise GanError(
            f"ckpt_path={path} is a folder without checkpoints/last.ckpt, not a checkpoint. {hint}."
        )
    ckpt = read_checkpoint(
        path,
        f"ckpt_path={path}",
        RESUME_HINT,
        "Resume from another checkpoint of that run, e.g. its best_*.ckpt, or copy the file again",
    )
    hparams = ckpt["hyper_parameters"]
    theirs, ours = hparams["model"], expected_model_cfg
    if theirs.get("name") != ours.get("name"):
        raise GanError(
            f"ckpt_path={path} was written by a model={theirs.get('name')} run, but this run has "
            f"model={ours.get('name')}: its weights cannot be loaded. Resume with "
            f"model={theirs.get('name')} and that run's other settings{_run_config_hint(path)}, "
            f"or drop ckpt_path to start a new run."
        )
    # Through the schema, so that keys an older checkpoint lacks take their defaults.
    typed = to_dict(
        module_config(
            model=theirs, condition=hparams.get("condition"), stabilize=hparams.get("stabilize")
        )
    )
    a, b = _flatten(typed["model"], "model"), _flatten(ours, "model")
    if condition is not None:
        a |= _flatten(typed["condition"], "condition")
        b |= _flatten(condition, "condition")
    if stabilize is not None:
        a |= {f"stabilize.{k}": typed["stabilize"][k] for k in D_SHAPING}
        b |= {f"stabilize.{k}": stabilize[k] for k in D_SHAPING}
    differ = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    if differ:
        was = ", ".join(f"{k}={a.get(k)}" for k in differ[:3])
        now = ", ".join(f"{k}={b.get(k)}" for k in differ[:3])
        raise GanError(
            f"ckpt_path={path} was written with {was}, but this run has {now}: the networks "
            f"differ, so its weights cannot be loaded. Resume with the checkpoint's settings"
            f"{_run_config_hint(path)}, or drop ckpt_path to start a new run."
        )
    state = ckpt["state_dict"]
    has_ema = any(str(k).startswith("ema_generator.") for k in state)
    if ema is not None and has_ema != ema:
        keep = "true" if has_ema else "false"
        raise GanError(
            f"ckpt_path={path} {'holds' if has_ema else 'holds no'} EMA weights (its run had "
            f"ema.enabled={keep}), but this run has ema.enabled={str(ema).lower()}. Resume with "
            f"ema.enabled={keep}."
        )
    check_callback_paths(ckpt, path)


def check_callback_paths(ckpt: dict[str, Any], path: Path) -> None:
    """GanError when a callback's saved state names a file outside the checkpoint's folder.

    Lightning's ModelCheckpoint restores the paths of the checkpoints it kept (when its
    folder is unchanged) and later deletes the ones it replaces: a crafted state
    (`<dir>/../../file`) would delete any file. Each path must lie in the state's own folder.
    """
    for name, state in (ckpt.get("callbacks") or {}).items():
        if not isinstance(state, dict):
            continue
        home = os.path.realpath(str(state.get("dirpath") or path.parent))
        paths = [
            state.get(k) for k in ("best_model_path", "kth_best_model_path", "last_model_path")
        ]
        paths += list((state.get("best_k_models") or {}).keys())
        for p in paths:
            if not p:
                continue
            real = os.path.realpath(str(p))
            if os.path.dirname(real) != home:
                raise GanError(
                    f"ckpt_path={path} names {p} in its {str(name).split('{')[0]} state, which is "
                    f"not in that callback's folder: a resume would write or delete there. "
                    f"Resume from a checkpoint this project wrote, in its run folder."
                )
