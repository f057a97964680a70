"""Export a trained generator to ONNX, TorchScript or a shareable safetensors folder, and
check the result before saying so.

    pip install -e ".[app]"                      # onnx and onnxruntime
    python -m gan.export ckpt=outputs/2024-05-01/12-00-00                  # -> generator.onnx
    python -m gan.export ckpt=last.ckpt format=torchscript out=g.pt
    python -m gan.export ckpt=last.ckpt out=models/g.onnx ema=false
    python -m gan.export ckpt=last.ckpt format=safetensors out=digits-gan   # a folder to share
    python -m gan.export ckpt=last.ckpt truncation=0.7 out=g07.onnx   # ψ baked into the graph

Options (key=value, Hydra style; an unknown key is an error):
    ckpt    a checkpoint written by `python -m gan.train`, its run folder, or a folder
            written by format=safetensors (required)
    format  onnx | torchscript | safetensors (the Hugging Face layout: gan.training.hub)
    out     the file to write (generator.onnx; generator.pt for format=torchscript), or
            the folder (generator/ for format=safetensors)
    ema     true: the EMA weights (an error if the run kept none); false: G itself;
            null (the default): the EMA weights when the checkpoint has them
    truncation  the truncation trick's ψ >= 0 (docs/truncation.md): onnx and torchscript
            bake it into the graph, which scales its input z to mean + ψ (z - mean) before G
            (the metadata's `truncation` says ψ); safetensors records it in config.json and
            the model card, and gan.sample, gan.app and gan.export then draw with it unless
            given truncation=... (default: the ψ a folder given as ckpt records, else 1.0)
    trust_code  true: build a network outside the project's registry, which imports the
            code the checkpoint names; only for a model you trained yourself (false)
    overwrite  true: replace an existing `out` (false: refuse, before loading anything)

format=safetensors writes model.safetensors (G, and the EMA G when the run kept one),
config.json and a model card into the folder `out`; `gan.sample`, `gan.app` and
`gan.export` load it without unpickling anything. It is checked by loading it back: the
same noise must give bit-identical images, or nothing is written.

The exported G maps noise z, float32 (N, noise.dim) with any batch size N, to images
float32 (N, C, H, W) in G's output range ([-1, 1] for tanh, [0, 1] for sigmoid). A
class-conditional G takes a second input, labels int64 (N,). The ONNX file names its
inputs `z` (and `labels`), its output `images`, and keeps `noise`, `noise_dim`, `output`,
`num_classes` and `truncation` (ψ, applied to z inside the graph: feed z as drawn) in its
metadata. Before reporting success the export is run by onnxruntime (or torch.jit) and by
PyTorch on the same noise, at batch sizes 1 and 7, and the largest difference must be
<= 1e-4; the file is written only then (through a temp file of a random name and a rename:
nothing planted beside `out` can redirect it). Errors print one `error: ...` line and exit
with status 1. See docs/app.md for sampling with onnxruntime.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING, DictConfig

from gan.tools.explore import num_classes
from gan.training import hub
from gan.utils.errors import GanError, first_line
from gan.utils.options import check_truncation, command, parse_options

if TYPE_CHECKING:
    from torch import Tensor, nn

    from gan.training.module import GAN

FORMATS = ("onnx", "torchscript", "safetensors")
DEFAULT_OUT = {"onnx": "generator.onnx", "torchscript": "generator.pt", "safetensors": "generator"}
TOLERANCE = 1e-4  # largest |runtime - PyTorch| accepted, on images in G's output range
CHECK_BATCHES = (1, 7)  # batch sizes the check runs: one that is not the traced size


@dataclass
class ExportConfig:
    """The options of `python -m gan.export`; see the module docstring."""

    ckpt: str = MISSING
    format: str = "onnx"
    out: str | None = None  # None: DEFAULT_OUT[format]
    ema: bool | None = None
    truncation: Any = None  # ψ >= 0, or None: check_truncation reads it and names the fix
    trust_code: bool = False
    overwrite: bool = False


def parse(argv: Sequence[str]) -> DictConfig:
    """key=value arguments -> a checked ExportConfig node (GanError on any mistake)."""
    cfg, _ = parse_options(argv, ExportConfig, "python -m gan.export ckpt=last.ckpt format=onnx")
    if cfg.format not in FORMATS:
        raise GanError(f"format={cfg.format!r} is unknown: use one of {', '.join(FORMATS)}.")
    if cfg.truncation is not None:
        cfg.truncation = check_truncation(cfg.truncation)
    if not cfg.out:
        cfg.out = DEFAULT_OUT[cfg.format]
    return cfg


def check_out(out: Path, fmt: str = "onnx", overwrite: bool = False) -> None:
    """Fail early (before loading anything) when `out` cannot, or may not, be written: an
    existing `out` is replaced only with `overwrite`."""
    from gan.utils.files import check_writable

    if fmt == "safetensors":
        if out.exists() and not out.is_dir():
            raise GanError(
                f"out={out} is a file, but format=safetensors writes a folder: pass a folder, "
                f"e.g. out={out.with_suffix('')}."
            )
        taken = [name for name in hub.FILES if os.path.lexists(out / name)]
        if taken and not overwrite:
            raise GanError(
                f"out={out} already holds {', '.join(taken)}. Pass overwrite=true to replace "
                f"them, or another out=...."
            )
        check_writable(out, key="out")
        return
    if out.is_dir():
        raise GanError(
            f"out={out} is a folder: pass a file name, e.g. out={out / 'generator.onnx'}."
        )
    check_writable(out.parent, key="out")
    if not overwrite and os.path.lexists(out):
        raise GanError(
            f"out={out} already exists. Pass overwrite=true to replace it, or another out=...."
        )


# ---- what is exported ------------------------------------------------------------------


def exported_net(module: GAN, ema: bool | None = None, truncation: float = 1.0) -> nn.Module:
    """G as the file holds it: noise (and labels, for a conditional G) -> images; with
    `truncation` ψ != 1, z goes through gan.core.sampling.truncate first."""
    from torch import nn

    from gan.core.sampling import truncate

    net = module.sampling_generator(ema).eval()
    psi, dist = check_truncation(truncation), str(module.cfg.noise.dist)
    if num_classes(module) == 0 and psi == 1.0:
        return net

    class Truncated(nn.Module):  # ψ in the graph; names the second input for the exporters
        def __init__(self, g: nn.Module) -> None:
            super().__init__()
            self.g = g

        def forward(self, z: Tensor, *labels: Tensor) -> Tensor:
            return self.g(truncate(z, psi, dist), *labels)  # (N, C, H, W)

    if num_classes(module) == 0:
        return Truncated(net).eval()

    class Conditional(Truncated):
        def forward(self, z: Tensor, labels: Tensor) -> Tensor:
            return self.g(truncate(z, psi, dist), labels)

    return Conditional(net).eval()


def example_inputs(module: GAN, n: int, seed: int = 0) -> tuple[Tensor, ...]:
    """The inputs of `exported_net` for n images: (z,), or (z, labels) for a conditional G."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    z = module.sample_z(n, generator=gen).cpu()  # (n, D)
    k = num_classes(module)
    if k == 0:
        return (z,)
    return z, torch.randint(0, k, (n,), generator=gen)  # (n,) int64


def input_names(module: GAN) -> list[str]:
    return ["z", "labels"] if num_classes(module) else ["z"]


# ---- writing ---------------------------------------------------------------------------


def write_onnx(module: GAN, net: nn.Module, path: Path, truncation: float = 1.0) -> None:
    """Export `net` to ONNX at `path`, with a dynamic batch dimension and metadata
    (`truncation`: the ψ that `net` applies, recorded there)."""
    import onnx
    import torch

    names = input_names(module)
    quiet = io.StringIO()  # the exporter narrates its stages on stdout
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet):
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notice
        # dynamo=False: the TorchScript-based exporter takes ~1 s per generator where the
        # torch.export-based one takes 5-10 s, and gives the same graph for these plain nets.
        torch.onnx.export(
            net,
            example_inputs(module, 3),
            str(path),
            input_names=names,
            output_names=["images"],
            dynamic_axes={name: {0: "batch"} for name in [*names, "images"]},
            dynamo=False,
        )
    model = onnx.load(str(path))
    noise = module.cfg.noise
    meta = {
        "noise": str(noise.dist),
        "noise_dim": str(noise.dim),
        "output": str(module.cfg.model.output),
        "num_classes": str(num_classes(module)),
        "truncation": f"{truncation:g}",  # already applied inside: feed z as drawn
    }
    onnx.helper.set_model_props(model, meta)
    onnx.save(model, str(path))


def write_torchscript(module: GAN, net: nn.Module, path: Path, truncation: float = 1.0) -> None:
    """Trace `net` to TorchScript at `path` (the batch size stays free: G has no
    batch-dependent control flow)."""
    import torch

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit's deprecation notice
        traced = torch.jit.trace(net, example_inputs(module, 3))
        torch.jit.save(traced, str(path))


def runner(fmt: str, path: Path) -> Callable[..., Tensor]:
    """A function running the exported file: inputs (tensors) -> images (a tensor)."""
    import torch

    if fmt == "onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]

        def run(*inputs: Tensor) -> Tensor:
            feed = {name: x.numpy() for name, x in zip(names, inputs)}
            return torch.from_numpy(session.run(["images"], feed)[0])

        return run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = torch.jit.load(str(path), map_location="cpu")

    def run_ts(*inputs: Tensor) -> Tensor:
        with torch.no_grad():
            return loaded(*inputs)

    return run_ts


def verify(module: GAN, net: nn.Module, fmt: str, path: Path) -> float:
    """The largest |file - PyTorch| over images of the same noise at each CHECK_BATCHES size;
    GanError when above TOLERANCE or when a batch comes back with the wrong shape."""
    import torch

    run = runner(fmt, path)
    worst = 0.0
    for i, n in enumerate(CHECK_BATCHES):
        inputs = example_inputs(module, n, seed=100 + i)
        with torch.no_grad():
            want = net(*inputs).float()  # (n, C, H, W)
        got = run(*inputs)
        if got.shape != want.shape:
            raise GanError(
                f"the exported file gives images of shape {tuple(got.shape)} for a batch of "
                f"{n}, PyTorch {tuple(want.shape)}: the export is broken, nothing was written."
            )
        worst = max(worst, float((got.float() - want).abs().max()))
    if not worst <= TOLERANCE:  # NaN fails too
        raise GanError(
            f"the exported file and PyTorch differ by up to {worst:.2e} (> {TOLERANCE:g}) on "
            f"the same noise: the export is wrong, nothing was written."
        )
    return worst


def write_folder(
    module: GAN, out: Path, trust_code: bool = False, truncation: float = 1.0
) -> float:
    """The shared folder (gan.training.hub) at `out`, recording the ψ `truncation`, written
    into a temporary folder beside it and loaded back first: its G and EMA G must draw
    bit-identical images, and it must record the same ψ (returns 0.0)."""
    import os
    import shutil
    import tempfile

    import torch

    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        hub.save(module, tmp, truncation)
        back = hub.load_folder(tmp, trust_code)
        if hub.recorded_truncation(tmp) != truncation:
            raise GanError(
                f"the exported folder does not record ψ={truncation:g}: nothing written."
            )
        for ema in (False, True) if module.ema_generator is not None else (False,):
            for i, n in enumerate(CHECK_BATCHES):
                inputs = example_inputs(module, n, seed=100 + i)
                with torch.no_grad():
                    want = exported_net(module, ema)(*inputs)
                    got = exported_net(back, ema)(*inputs)
                if not torch.equal(got, want):
                    worst = float((got - want).abs().max())
                    raise GanError(
                        f"the exported folder draws images up to {worst:.2e} away from the "
                        f"checkpoint's on the same noise: nothing was written."
                    )
        for name in hub.FILES:
            os.replace(tmp / name, out / name)
    except OSError as e:
        raise GanError(f"cannot write {out} ({e.strerror or e}): pick another out=...") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0.0


def export(cfg: DictConfig) -> tuple[Path, float]:
    """Load the checkpoint, export G, verify it; returns the file and the largest difference."""
    from gan.training.checkpoints import check_ckpt, load_gan
    from gan.utils.files import atomic_write

    out = Path(cfg.out).expanduser()
    ckpt = check_ckpt(Path(cfg.ckpt).expanduser())  # both before loading anything
    check_out(out, cfg.format, cfg.overwrite)
    needs = ["onnx", "onnxruntime"] if cfg.format == "onnx" else []
    for name in needs:
        try:
            __import__(name)
        except ImportError:
            raise GanError(
                f'format=onnx needs {name}, in the optional extra: pip install -e ".[app]"'
            ) from None
    module = load_gan(ckpt, cfg.trust_code)
    if cfg.ema and module.ema_generator is None:
        raise GanError(
            f"ema=true but {ckpt} has no EMA weights (trained with ema.enabled=false): "
            f"drop ema=true, or train with ema.enabled=true."
        )
    if cfg.truncation is None:  # a shared folder's recorded ψ (1.0 for a checkpoint)
        cfg.truncation = hub.recorded_truncation(ckpt)
    psi = float(cfg.truncation)
    if cfg.format == "safetensors":
        return out, write_folder(module, out, cfg.trust_code, psi)
    net = exported_net(module, cfg.ema, psi)
    write = write_onnx if cfg.format == "onnx" else write_torchscript
    worst = 0.0

    def write_and_check(tmp: Path) -> None:
        nonlocal worst
        try:
            write(module, net, tmp, psi)
        except GanError:
            raise
        except Exception as e:  # the exporters raise many kinds; the message is what counts
            raise GanError(f"exporting G to {cfg.format} failed: {first_line(e)}") from None
        worst = verify(module, net, cfg.format, tmp)

    try:  # checked on the temp file: `out` only ever holds a verified export
        atomic_write(out, write_and_check)
    except OSError as e:
        raise GanError(f"cannot write {out} ({e.strerror or e}): pick another out=...") from None
    return out, worst


def main(argv: Sequence[str] | None = None) -> Path | None:
    """The command line: parse key=value arguments, export; GanError -> `error: ...`, exit 1."""

    def run(args: list[str]) -> Path:
        cfg = parse(args)
        path, worst = export(cfg)
        if cfg.format == "safetensors":
            print(
                f"wrote {path}/ ({', '.join(hub.FILES)}): loaded back, it draws "
                f"bit-identical images. Sample with: python -m gan.sample ckpt={path}"
            )
            return path
        runtime = "onnxruntime" if cfg.format == "onnx" else "torch.jit"
        batches = " and ".join(map(str, CHECK_BATCHES))
        print(
            f"wrote {path}: {runtime} and PyTorch agree on batches of {batches} "
            f"(max abs difference {worst:.2e} <= {TOLERANCE:g})"
        )
        return path

    return command(argv, __doc__, run)
