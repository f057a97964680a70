"""A local web app to explore a trained generator: sample grids, latent walks, a collapse gauge.

    pip install -e ".[app]"                                  # gradio: an optional extra
    python -m gan.app ckpt=outputs/2024-05-01/12-00-00       # a run folder, or a .ckpt file
    python -m gan.app ckpt=last.ckpt port=7861 seed=3
    python -m gan.app ckpt=last.ckpt host=0.0.0.0            # reachable from the LAN: opt-in

Options (key=value, Hydra style; an unknown key is an error):
    ckpt    a checkpoint written by `python -m gan.train`, its run folder, or a folder
            written by `python -m gan.export format=safetensors` (required)
    host    the address to serve on (127.0.0.1: this machine only)
    port    the port (null: 7860, or the next free one)
    share   true: also open a public gradio.live link (off unless asked for)
    seed    the first seed of the sample grid (0)
    grid    images per side of the sample grid (8)
    ema     true: the EMA weights (an error if the run kept none); false: G itself;
            null (the default): the EMA weights when the checkpoint has them
    device  where G runs (cpu)
    trust_code  true: build a network outside the project's registry, which imports the code
            the checkpoint names; only for a model you trained yourself (false)

The generator is rebuilt from the checkpoint alone, as `python -m gan.sample` does, and
errors are the same one-line `error: ...` messages (exit status 1). Panels:
    samples        a grid from a seed ("new seed" draws another); a class picker for
                   class-conditional checkpoints
    interpolation  a strip of images between two seeds (straight or spherical), and a slider
                   that shows the image at any point of the path
    collapse gauge the project classifier's class histogram and FID-like, coverage and
                   MNIST scores on 1,000 fresh samples, next to the real data's floor (needs
                   the data on disk and its cached classifier: `python -m gan.classifier`)
    run            the run's config.yaml and result.json, when the checkpoint is in a run folder
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING, DictConfig

from gan.errors import GanError, first_line
from gan.explore import (
    GAUGE_SAMPLES,
    PER_ROW,
    Gauge,
    gauge_table,
    histogram,
    interpolation,
    num_classes,
    sample_grid,
)
from gan.options import command, parse_options

if TYPE_CHECKING:  # torch, lightning and gradio load only once the arguments are fine
    import gradio as gr
    import numpy as np

    from gan.module import GAN

TITLE = "GAN explorer"
MAX_GRID = 16  # images per side of the sample grid, at most


@dataclass
class AppConfig:
    """The options of `python -m gan.app`; see the module docstring."""

    ckpt: str = MISSING
    host: str = "127.0.0.1"
    port: int | None = None
    share: bool = False
    seed: int = 0
    grid: int = 8
    ema: bool | None = None
    device: str = "cpu"
    trust_code: bool = False


# ---- arguments -------------------------------------------------------------------------


def parse(argv: Sequence[str]) -> DictConfig:
    """The app's key=value arguments -> a checked AppConfig node (GanError on any mistake)."""
    cfg, _ = parse_options(argv, AppConfig, "python -m gan.app ckpt=last.ckpt port=7861")
    if cfg.port is not None and not 0 < cfg.port < 65536:
        raise GanError(f"port={cfg.port} is invalid: it must be in 1..65535 (or null).")
    if not 1 <= cfg.grid <= MAX_GRID:
        raise GanError(f"grid={cfg.grid} is invalid: it must be in 1..{MAX_GRID} images per side.")
    return cfg


# ---- the run folder --------------------------------------------------------------------


def run_files(ckpt: Path) -> tuple[str | None, dict[str, Any] | None]:
    """The text of the run's config.yaml and the dict in its result.json, when the checkpoint
    sits in a run folder (`<run>/checkpoints/x.ckpt`); None for what is not there."""
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    config = run / "config.yaml"
    result = run / "result.json"
    text = config.read_text() if config.is_file() else None
    try:
        scores = json.loads(result.read_text()) if result.is_file() else None
    except (OSError, json.JSONDecodeError):
        scores = {"error": f"{result} is not valid JSON"}
    return text, scores if isinstance(scores, dict) or scores is None else {"result": scores}


# ---- the app ---------------------------------------------------------------------------


def build(module: GAN, ckpt: Path, cfg: DictConfig) -> gr.Blocks:
    """The gradio app for `module`, loaded from `ckpt`; `cfg` holds the app's options."""
    import gradio as gr

    ema = cfg.ema
    k = num_classes(module)
    gauge = Gauge(module)
    config_text, result = run_files(ckpt)
    model = module.cfg.model
    weights = "G itself" if module.ema_generator is None or ema is False else "its EMA weights"
    classes = f", conditional on {k} classes" if k else ""
    about = (
        f"`{ckpt}`: the `{model.name}` generator ({model.img_size} px) after "
        f"{module.iteration:,} iterations, {weights}{classes}."
    )

    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\n{about}")
        picker = gr.Dropdown(
            [PER_ROW, *map(str, range(k))],
            value=PER_ROW,
            label="class",
            visible=k > 0,  # unconditional models take no label
        )
        with gr.Tab("Samples"):
            with gr.Row():
                seed = gr.Number(cfg.seed, precision=0, label="seed", minimum=0)
                new_seed = gr.Button("new seed")
                side = gr.Slider(1, MAX_GRID, value=cfg.grid, step=1, label="grid size")
            grid = gr.Image(
                sample_grid(module, cfg.seed, side.value, PER_ROW, ema),
                label="samples",
                format="png",
                image_mode=None,
                interactive=False,
            )
        with gr.Tab("Interpolation"):
            with gr.Row():
                seed_a = gr.Number(cfg.seed, precision=0, label="from seed", minimum=0)
                seed_b = gr.Number(cfg.seed + 1, precision=0, label="to seed", minimum=0)
                steps = gr.Slider(2, 24, value=10, step=1, label="steps")
                spherical = gr.Checkbox(False, label="spherical (slerp)")
            first_path, first_frame = interpolation(
                module, cfg.seed, cfg.seed + 1, steps.value, False, 0.5, PER_ROW, ema
            )
            strip = gr.Image(
                first_path, label="path", format="png", image_mode=None, interactive=False
            )
            position = gr.Slider(0, 1, value=0.5, step=0.01, label="position along the path")
            frame = gr.Image(
                first_frame,
                label="image at this point",
                format="png",
                image_mode=None,
                interactive=False,
            )
        with gr.Tab("Collapse gauge"):
            gr.Markdown(
                f"{GAUGE_SAMPLES:,} fresh samples through the project's classifier: do they "
                f"cover every class, and how far are they from the real digits?"
            )
            with gr.Row():
                gauge_seed = gr.Number(cfg.seed, precision=0, label="seed", minimum=0)
                measure = gr.Button("measure")
            gauge_note = gr.Markdown("Press *measure* (a few seconds on a CPU).")
            gauge_plot = gr.Image(
                label="class histogram", format="png", image_mode=None, interactive=False
            )
            gauge_json = gr.JSON(label="scores")
        with gr.Tab("Run"):
            if config_text is None and result is None:
                gr.Markdown(
                    f"{ckpt} is not in a run folder (`<run>/checkpoints/`): no config.yaml "
                    f"or result.json to show."
                )
            gr.JSON(result, label="result.json (final scores)", visible=result is not None)
            gr.Code(
                config_text, language="yaml", label="config.yaml", visible=config_text is not None
            )

        def draw_grid(s: float, n: float, choice: str | None = None) -> np.ndarray:
            return sample_grid(module, int(s), int(n), choice, ema)

        def draw_walk(
            a: float, b: float, n: float, sph: bool, t: float, choice: str | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
            return interpolation(module, int(a), int(b), int(n), sph, t, choice, ema)

        def draw_frame(
            a: float, b: float, n: float, sph: bool, t: float, choice: str | None
        ) -> np.ndarray:
            return draw_walk(a, b, n, sph, t, choice)[1]

        def reroll() -> int:
            return random.randrange(2**31)

        def read_gauge(s: float, choice: str | None = None) -> tuple[str, Any, dict[str, Any]]:
            problem = gauge.ready()
            if problem is not None:
                return problem, None, {}
            scores = gauge.read(int(s), choice, ema)
            plot = histogram(scores["class_share"], scores["real"]["class_share"])
            return gauge_table(scores), plot, scores

        grid_in = [seed, side, picker]
        walk_in = [seed_a, seed_b, steps, spherical, position, picker]
        # Each drawing has one named endpoint (for scripts and gradio_client); the other
        # triggers of the same function stay private.
        seed.change(draw_grid, grid_in, grid, api_name="grid")
        # The first pictures are drawn above, into the page itself: no request on load.
        for trigger in (side.change, picker.change):
            trigger(draw_grid, grid_in, grid, api_visibility="private")
        new_seed.click(reroll, None, seed, api_visibility="private")  # seed.change redraws
        seed_a.change(draw_walk, walk_in, [strip, frame], api_name="interpolate")
        for trigger in (seed_b.change, steps.change, spherical.change):
            trigger(draw_walk, walk_in, [strip, frame], api_visibility="private")
        position.change(draw_frame, walk_in, frame, api_visibility="private")
        measure.click(
            read_gauge, [gauge_seed, picker], [gauge_note, gauge_plot, gauge_json], api_name="gauge"
        )
    return app


def serve(cfg: DictConfig) -> None:
    """Load the checkpoint, build the app and serve it until interrupted."""
    from gan.sample import check_ckpt, load_gan

    ckpt = check_ckpt(Path(cfg.ckpt).expanduser())  # fail in a blink, before loading gradio
    module = load_gan(ckpt, cfg.trust_code)
    if cfg.ema and module.ema_generator is None:
        raise GanError(
            f"ema=true but {ckpt} has no EMA weights (trained with ema.enabled=false): "
            f"drop ema=true, or train with ema.enabled=true."
        )
    try:
        module.to(cfg.device)
    except (RuntimeError, AssertionError) as e:
        raise GanError(f"device={cfg.device!r} is not usable here ({first_line(e)}).") from None
    # No usage reports to gradio's servers: the app reaches no network the user did not ask for.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio as gr
    except ImportError:
        raise GanError('the app needs gradio, an optional extra: pip install -e ".[app]"') from None
    app = build(module, ckpt, cfg)
    # System fonts: the default theme would fetch its web fonts from Google's servers.
    fonts = ["ui-sans-serif", "system-ui", "sans-serif"]
    theme = gr.themes.Default(font=fonts, font_mono=["ui-monospace", "monospace"])
    try:
        app.launch(
            server_name=cfg.host,
            server_port=cfg.port,
            share=cfg.share,
            inbrowser=False,
            theme=theme,
            ssr_mode=False,  # no Node.js server next to Python's
            mcp_server=False,
            show_error=True,
        )
    except OSError as e:
        where = f"{cfg.host}:{cfg.port or '7860..'}"
        raise GanError(
            f"cannot serve on {where} ({first_line(e)}): pick another port=..."
        ) from None


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: parse key=value arguments, serve; GanError -> `error: ...`, exit 1."""
    command(argv, __doc__, lambda args: serve(parse(args)))


if __name__ == "__main__":
    main()
