"""Resume a run from its folder alone: `python -m gan.train ckpt_path=<run folder>`.

The run's own `config.yaml` is the config: the command line needs nothing else, and may add
only what cannot change what the checkpoint trained: a longer run (`trainer.max_epochs`,
`max_steps`, `max_time`), the logger, the callbacks, the progress bar and summary, where the data lives
(`data.root`, `data.download`, `data.num_workers`), the NaN guard, `verbose`, `tags` and
`trust_code`. Any other override is refused with a list, unless it equals the run's own
value (so `<the same overrides> ckpt_path=...` resumes as before).

`config.yaml` is read as data: YAML's safe loader, typed by the schema, and every
`_target_` in it must be one the project's own config files name (or a registered network);
anything else needs `trust_code=true`, as a network of one's own does.

`gan.training.faults.CheckOutputDir` calls `resume_config` before Hydra writes anything, so a refused
resume leaves the run folder as it was, and points Hydra's run folder at the resumed run
(its `.hydra/` record of this command goes to `.hydra/resume-<date>_<time>/`).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from gan.training.checkpoints import LIGHTNING_NAMES, resolve_checkpoint
from gan.utils.errors import GanError, first_line

CONF = Path(__file__).resolve().parents[2] / "conf"
# Overrides that leave what the checkpoint trained alone (a key, or a key's prefix).
HARMLESS = (
    "ckpt_path",
    "trainer.max_epochs",
    "trainer.max_steps",
    "trainer.max_time",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "callbacks",  # they watch and save; none changes the weights
    "logger",
    "data.root",
    "data.download",
    "data.num_workers",
    "guard",
    "verbose",
    "tags",
    "trust_code",
    "overwrite",
)


def resume_command(run: str | Path, *extra: str) -> str:
    """The command that continues the run in folder `run`: what the hints print, verbatim."""
    import re
    import shlex

    value = str(run)
    if re.search(r"[\s,=\[\]{}()'\"\\:*?$]", value):  # Hydra's override grammar: quote it
        value = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return " ".join(["python -m gan.train", shlex.quote(f"ckpt_path={value}"), *extra])


def run_of(ckpt_path: str | None) -> tuple[Path, Path] | None:
    """(run folder, checkpoint file) when `ckpt_path` names a run folder, or a checkpoint in
    `<run>/checkpoints/`, whose run kept its config.yaml; None otherwise."""
    if not ckpt_path or str(ckpt_path) in LIGHTNING_NAMES:
        return None
    path = resolve_checkpoint(ckpt_path)
    run = path.parent.parent
    if path.parent.name != "checkpoints" or not (run / "config.yaml").is_file():
        return None
    return run.absolute(), path.absolute()


# Where classes a saved config.yaml may name lived before gan's modules moved into role
# packages: a run folder of an earlier version resumes too.
MOVED = {
    "gan.callbacks.": "gan.training.callbacks.",
    "gan.faults.": "gan.training.faults.",
    "gan.health.": "gan.training.health.",
    "gan.loggers.": "gan.training.loggers.",
    "gan.data.MNISTDataModule": "gan.data.datamodule.MNISTDataModule",
    "lightning.pytorch.loggers.CSVLogger": "gan.training.loggers.CSVLogger",
    "lightning.pytorch.loggers.WandbLogger": "gan.training.loggers.WandbLogger",
}


def renamed(node: Any) -> Any:
    """A plain container with every `_target_` of a moved class under its current name."""
    if isinstance(node, dict):
        out = {k: renamed(v) for k, v in node.items()}
        target = out.get("_target_")
        if isinstance(target, str):
            for old, new in MOVED.items():
                if target.startswith(old):
                    out["_target_"] = new + target[len(old) :]
        return out
    if isinstance(node, list):
        return [renamed(v) for v in node]
    return node


def typed_overrides(task: Any) -> list[str]:
    """Hydra's `overrides.task` as typed: a `${...}` in one is text here, not resolved."""
    return [str(o) for o in OmegaConf.to_container(task, resolve=False)]


def override_key(override: str) -> str:
    """`+a.b=1`, `++a.b=1`, `~a.b` -> `a.b`."""
    return override.split("=", 1)[0].lstrip("+~")


def harmless(key: str) -> bool:
    return key.startswith("hydra.") or any(key == h or key.startswith(f"{h}.") for h in HARMLESS)


@cache
def known_targets() -> frozenset[str]:
    """Every `_target_` the project's config files and schema name, and the networks."""
    import yaml

    from gan.nets import registry
    from gan.training.config import DataConfig, TrainerConfig

    found = {DataConfig._target_, TrainerConfig._target_, *registry()}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            target = node.get("_target_")
            if isinstance(target, str):
                found.add(target)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in CONF.rglob("*.yaml"):
        walk(yaml.safe_load(path.read_text()))
    return frozenset(found)


def targets(node: Any, where: str = "") -> list[tuple[str, str]]:
    """(key, value) of every `_target_` under a plain container."""
    out: list[tuple[str, str]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{where}.{k}" if where else str(k)
            if k == "_target_":
                out.append((key, str(v)))
            else:
                out += targets(v, key)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += targets(v, f"{where}[{i}]")
    return out


MAX_CONFIG_BYTES = 1_000_000  # a run's config.yaml is a few kB


def load_saved(run: Path) -> dict[str, Any]:
    """The run's config.yaml as a plain dict: YAML's safe loader without aliases, no
    interpolations (`${...}`: this project saves resolved configs), no symlinks in the run
    folder; GanError otherwise."""
    import yaml

    from gan.training.rebuild import plain_values

    path = run / "config.yaml"

    class NoAliases(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError(
                    "it uses a YAML alias (*name), which a saved config never does"
                )
            return super().compose_node(parent, index)

    check_links(run)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise GanError(f"{path} is over {MAX_CONFIG_BYTES:,} bytes: not a saved config.")
        saved = yaml.load(path.read_text(encoding="utf-8"), Loader=NoAliases)  # noqa: S506
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as e:
        raise GanError(
            f"{path} is not readable YAML ({first_line(e)}): resume with the run's overrides "
            f"given again, or start a new run."
        ) from None
    if not isinstance(saved, dict):
        raise GanError(f"{path} holds no config: start a new run, or restore the file.")
    plain_values(saved, str(path))
    return saved


def check_links(run: Path) -> None:
    """GanError when anything in the run folder is a symbolic link: a resume writes into
    the folder, and a link would send those writes elsewhere."""
    import os

    for folder, dirs, files in os.walk(run, followlinks=False):
        for name in [*dirs, *files]:
            entry = Path(folder) / name
            if entry.is_symlink():
                raise GanError(
                    f"{entry} is a symbolic link: a resume writes into its run folder, and the "
                    f"link would send those writes elsewhere. Copy the run with its files "
                    f"(cp -rL), or remove the link."
                )


def rebased(node: Any, old: str, new: str) -> Any:
    """A plain container with every string path under `old` (the folder the run was saved
    in) moved under `new` (where it is now): a copied or moved run writes into itself."""
    if isinstance(node, dict):
        return {k: rebased(v, old, new) for k, v in node.items()}
    if isinstance(node, list):
        return [rebased(v, old, new) for v in node]
    if isinstance(node, str) and old and (node == old or node.startswith(old.rstrip("/") + "/")):
        return new + node[len(old.rstrip("/")) :]
    return node


LENGTHS = ("trainer.max_epochs", "trainer.max_steps", "trainer.max_time")  # how long it runs
_ABSENT = object()
# Config keys that name where a callback or logger writes: all must lie in the run folder.
PATH_KEYS = ("dirpath", "save_dir", "default_root_dir", "root_dir", "log_dir", "output_dir")
# Under these groups any string may become part of a path (a file name, a logger's name or
# version joined to its folder), so each must stay in the run folder when joined to it.
WRITERS = ("callbacks", "logger", "trainer")


def check_paths(node: Any, run: Path, where: str = "", strict: bool = False) -> None:
    """GanError when a value of the config would make a resume write outside the run
    folder: a PATH_KEYS path outside it, or, under WRITERS, any string that leaves it when
    joined to it (an absolute name, `..`)."""
    import os

    home = os.path.realpath(run)
    if isinstance(node, dict):
        for k, v in node.items():
            key = f"{where}.{k}" if where else str(k)
            check_paths(v, run, key, strict or key in WRITERS or k in PATH_KEYS)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            check_paths(v, run, f"{where}[{i}]", strict)
    elif strict and isinstance(node, str):
        real = os.path.realpath(os.path.join(home, node))
        if real != home and not real.startswith(home + os.sep):
            raise GanError(
                f"{where}={node} would make the resume write outside its run folder {run}. "
                f"Drop that override, or restore the run's config.yaml."
            )


def _raw(cfg: DictConfig, key: str) -> Any:
    """The value at dotted `key` as given, interpolations unresolved (None when absent)."""
    node: Any = OmegaConf.to_container(cfg, resolve=False)
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _value(node: Any, key: str) -> Any:
    try:
        value = OmegaConf.select(node, key, throw_on_missing=False)
        return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    except OmegaConfBaseException:  # `${hydra:...}` before Hydra's run has started
        return "<unresolved>"


def resume_config(cfg: DictConfig, overrides: list[str]) -> DictConfig | None:
    """The config a resume from a run folder trains with; None when `cfg.ckpt_path` names no
    run folder with a config.yaml. GanError when an override would change the run."""
    found = run_of(cfg.get("ckpt_path"))
    if found is None:
        return None
    run, ckpt = found
    saved = renamed(load_saved(run))
    was = saved.get("paths", {}).get("output_dir") if isinstance(saved.get("paths"), dict) else None
    saved = rebased(saved, str(was or ""), str(run))
    plain = OmegaConf.create(saved)
    schedule = _value(plain, "optimizer.schedule")
    changed = []
    typed = {override_key(o): o for o in overrides}  # the last one wins, as in Hydra
    for key, given in typed.items():
        if harmless(key) and key not in LENGTHS:
            continue
        new, old = _value(cfg, key), _value(plain, key)
        if key in LENGTHS:
            if schedule not in (None, "constant") and new != old:
                changed.append(
                    f"{key}={new} (the run has {old}, and optimizer.schedule={schedule} spreads "
                    f"its decay over the run's length)"
                )
            continue
        if OmegaConf.select(plain, key, default=_ABSENT) is _ABSENT:
            changed.append(f"{key} (not a setting of the run: a recipe or search picks a new one)")
        elif isinstance(new, dict) and new != old:  # a group: `model=dcgan`, not its fields
            changed.append(f"{given} (the run's {key} differs)")
        elif new != old:
            changed.append(f"{key}={new} (the run has {old})")
    if changed:
        raise GanError(
            f"ckpt_path={run} resumes with the run's own config.yaml, but "
            f"{'; '.join(changed)} would change what it trained. Drop "
            f"{'that override' if len(changed) == 1 else 'those overrides'} (only "
            f"trainer.max_epochs, the logger, data.root and the like may change), or start a "
            f"new run without ckpt_path."
        )
    trust = bool(cfg.get("trust_code", False))
    from gan.training.config import TrainConfig

    saved.pop("ckpt_path", None)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(TrainConfig), saved)
    except OmegaConfBaseException as e:
        raise GanError(
            f"{run / 'config.yaml'} does not fit this version's config ({first_line(e)}): "
            f"resume with the run's overrides given again."
        ) from None
    assert isinstance(merged, DictConfig)
    for key in dict.fromkeys(override_key(o) for o in overrides):
        if harmless(key) and not key.startswith("hydra.") and key != "ckpt_path":
            # unresolved: `${paths.output_dir}` then resolves to the run folder set below
            OmegaConf.update(merged, key, _raw(cfg, key), merge=False, force_add=True)
    merged.ckpt_path = str(ckpt)
    merged.paths.output_dir = str(run)
    # Consent comes from the command line, never from the file.
    merged.trust_code, merged.overwrite = trust, bool(cfg.get("overwrite", False))
    try:  # an override's `${paths.output_dir}` resolves to the run folder set above
        resolved = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as e:
        raise GanError(
            f"ckpt_path={run}: the resumed config does not resolve ({first_line(e)}): drop the "
            f"override that names it."
        ) from None
    # What will be built: the saved config with this command's overrides, resolved.
    unknown = [(k, v) for k, v in targets(resolved) if v not in known_targets()]
    if unknown and not trust:
        key, value = unknown[0]
        raise GanError(
            f"{run / 'config.yaml'} names {key}={value}, which is not one of this project's "
            f"classes: building it would import and run that code. Add trust_code=true only "
            f"if you trust it (see docs/security.md)."
        )
    check_paths(resolved, run)  # after the code check: that refusal names the worse risk
    from gan.training.checkpoints import check_resume_checkpoint
    from gan.training.config import to_dict

    # The checkpoint too, before anything is written: weights-only, and of this config's nets.
    check_resume_checkpoint(
        ckpt,
        to_dict(merged.model),
        merged.ema.enabled,
        to_dict(merged.condition),
        to_dict(merged.stabilize),
    )
    return merged


# What Hydra's run will add to the resumed folder: put back if the command fails early.
_WRITES: dict[str, Any] = {}


def redirect(config: DictConfig) -> None:
    """Hydra's config before the run (a Hydra callback's `on_run_start`): a resume from a run
    folder is checked in full (GanError otherwise), then runs in that folder. This command's
    `.hydra/` record goes to `.hydra/resume-<date>_<time>/`; train.log is appended to."""
    import time

    from omegaconf import open_dict, read_write

    found = run_of(config.get("ckpt_path"))
    if found is None:
        return
    resume_config(config, typed_overrides(config.hydra.overrides.task))
    run = found[0]
    log = run / "train.log"
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    with read_write(config), open_dict(config):
        config.hydra.run.dir = str(run)
        if config.hydra.output_subdir is not None:  # DDP's other ranks write no record
            config.hydra.output_subdir = f".hydra/resume-{stamp}"
    _WRITES.update(
        record=run / ".hydra" / f"resume-{stamp}",
        log=log,
        log_size=log.stat().st_size if log.is_file() else None,
    )


def undo_writes() -> None:
    """Take back what Hydra wrote into the resumed folder (a command that failed before any
    training): its `.hydra/resume-*` record, and train.log's new lines."""
    import shutil

    if not _WRITES:
        return
    shutil.rmtree(_WRITES["record"], ignore_errors=True)
    log, size = _WRITES["log"], _WRITES["log_size"]
    try:
        if size is None:
            log.unlink(missing_ok=True)
        else:
            with log.open("r+b") as f:
                f.truncate(size)
    except OSError:
        pass
    _WRITES.clear()
