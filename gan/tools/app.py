"""A local web app to explore a trained generator: sample grids, latent walks, a collapse gauge.

    pip install -e ".[app]"                                  # gradio: an optional extra
    python -m gan.app ckpt=outputs/2024-05-01/12-00-00       # a run folder, or a .ckpt file
    python -m gan.app ckpt=last.ckpt port=7861 seed=3
    GAN_APP_AUTH=ann:s3cret python -m gan.app ckpt=last.ckpt host=0.0.0.0  # LAN, a login

Options (key=value, Hydra style; an unknown key is an error):
    ckpt    a checkpoint written by `python -m gan.train`, its run folder, or a folder
            written by `python -m gan.export format=safetensors` (required)
    host    the address to serve on (127.0.0.1: this machine only)
    port    the port (null: 7860, or the next free one)
    share   true: also open a public gradio.live link (off unless asked for)
    auth    user:password that the page asks for; required (or GAN_APP_AUTH=user:password
            in the environment, which keeps the password off the command line) when the
            app is reachable from other machines: a host other than 127.0.0.1, ::1 or
            localhost, or share=true
    seed    the first seed of the sample grid (0..2**63 - 1; 0)
    grid    images per side of the sample grid (8)
    ema     true: the EMA weights (an error if the run kept none); false: G itself;
            null (the default): the EMA weights when the checkpoint has them
    device  where G runs (cpu)
    trust_code  true: build a network outside the project's registry, which imports the code
            the checkpoint names; only for a model you trained yourself (false)

The generator is rebuilt from the checkpoint alone, as `python -m gan.sample` does, and
errors are the same one-line `error: ...` messages (exit status 1). In the page, every input
is checked (seeds in 0..2**63 - 1, the grid size, steps, position and class within their
controls' ranges) and a bad one gets a one-line message; any other failure shows a generic
line while its traceback goes to the server's log, never to the browser. Uploads are pictures
for the Project tab alone: gradio's upload route refuses files over 1 MB. Panels:
    samples        a grid from a seed ("new seed" draws another); a class picker for
                   class-conditional checkpoints; a truncation ψ slider (0 to 1.5: the ψ a
                   shared folder records, else 1; docs/truncation.md)
    interpolation  a strip of images between two seeds (straight or spherical), and a slider
                   that shows the image at any point of the path; a ψ slider of its own
    collapse gauge the project classifier's class histogram and FID-like, coverage and
                   MNIST scores on 1,000 fresh samples, next to the real data's floor (needs
                   the data on disk and its cached classifier: `python -m gan.classifier`)
    project        draw a digit (or upload a small picture): the nearest digit G draws, beside
                   the prepared drawing, the search's path from a random z to the one found
                   (gan.tools.projector; at most 300 steps and 8 restarts), and a button that
                   puts the found z into the Samples grid's first cell and starts the
                   Interpolation strip from it
    run            the run's config.yaml and result.json, when the checkpoint is in a run folder
"""

from __future__ import annotations

import functools
import html
import json
import logging
import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import MISSING, DictConfig

from gan.data.pictures import grey, read_picture
from gan.tools.explore import (
    PER_ROW,
    Gauge,
    gauge_table,
    histogram,
    interpolation,
    num_classes,
    sample_grid,
)
from gan.tools.projector import Projector, grid_with_found, walk_from_found
from gan.utils.errors import GanError, first_line
from gan.utils.options import command, parse_options

if TYPE_CHECKING:  # torch, lightning and gradio load only once the arguments are fine
    import gradio as gr
    import numpy as np

    from gan.training.module import GAN

TITLE = "GAN explorer"
MAX_QUEUE = 16  # requests waiting at once (a gauge reading takes seconds on a CPU)
MAX_GRID = 16  # images per side of the sample grid, at most
MIN_STEPS, MAX_STEPS = 2, 24  # images along the interpolation strip
SEED_MAX = 2**63 - 1  # seeds are int64: torch's generators take no larger
MAX_UPLOAD = 1024 * 1024  # bytes per file on gradio's upload route: a picture to project
AUTH_ENV = "GAN_APP_AUTH"  # user:password, when not given as auth=
LOCAL_HOSTS = ("127.0.0.1", "::1", "localhost")  # hosts that serve this machine only
MIN_SEARCH, MAX_SEARCH = 10, 300  # Adam steps of a projection in the app: seconds, not minutes
MAX_RESTARTS = 8  # random starts of a projection (a conditional G: per class)
MAX_TRUNCATION = 1.5  # the truncation ψ sliders' top (gan.core.sampling.truncate; 1: off)
FAILED = "Drawing this failed on the server (its log says why); try other inputs or reload."

log = logging.getLogger(__name__)


@dataclass
class AppConfig:
    """The options of `python -m gan.app`; see the module docstring."""

    ckpt: str = MISSING
    host: str = "127.0.0.1"
    port: int | None = None
    share: bool = False
    auth: str | None = None  # never stored here: parse() hands it on apart from the config
    seed: int = 0
    grid: int = 8
    ema: bool | None = None
    device: str = "cpu"
    trust_code: bool = False


# ---- arguments -------------------------------------------------------------------------


def parse(
    argv: Sequence[str], environ: Mapping[str, str] | None = None
) -> tuple[DictConfig, tuple[str, str] | None]:
    """The app's key=value arguments -> a checked AppConfig node and the (user, password)
    the page asks for (None: no login); GanError on any mistake, before anything loads.

    `auth=` never goes through OmegaConf, which would read `${...}` in a password as an
    interpolation and quote the whole value in its errors. `environ`: os.environ by default.
    """
    given = [arg.partition("=")[2] for arg in argv if arg.startswith("auth=")]
    rest = [arg for arg in argv if not arg.startswith("auth=")]
    cfg, _ = parse_options(rest, AppConfig, "python -m gan.app ckpt=last.ckpt port=7861")
    if cfg.port is not None and not 0 < cfg.port < 65536:
        raise GanError(f"port={cfg.port} is invalid: it must be in 1..65535 (or null).")
    if not 1 <= cfg.grid <= MAX_GRID:
        raise GanError(f"grid={cfg.grid} is invalid: it must be in 1..{MAX_GRID} images per side.")
    if not 0 <= cfg.seed <= SEED_MAX:
        raise GanError(f"seed={cfg.seed} is invalid: it must be in 0..{SEED_MAX} (2**63 - 1).")
    env = os.environ if environ is None else environ
    return cfg, credentials(given[-1] if given else None, cfg.host, cfg.share, env)


def credentials(
    given: str | None, host: str, share: bool, environ: Mapping[str, str]
) -> tuple[str, str] | None:
    """(user, password) from `auth=user:password` (`given`), else from $GAN_APP_AUTH; None
    when neither is set. GanError when the one used is malformed (never quoting it), or
    when neither is set and the app would be reachable from other machines: a host other
    than 127.0.0.1, ::1 or localhost, or share=true."""
    text, source = (given, "auth=") if given is not None else (environ.get(AUTH_ENV), AUTH_ENV)
    if text is not None and (given is not None or text):  # an empty variable is an unset one
        user, colon, password = text.partition(":")
        if not colon or not user or not password:
            raise GanError(
                f"{source} is malformed: it must be user:password, neither of them empty "
                f"(the password may hold ':', the user may not)."
            )
        return user, password
    if share:
        exposed = "share=true puts the app on a public gradio.live link"
    elif host.strip().lower() not in LOCAL_HOSTS:
        exposed = f"host={host} makes the app reachable from other machines"
    else:
        return None
    raise GanError(
        f"{exposed}, so it needs a password: pass auth=user:password, or set "
        f"{AUTH_ENV}=user:password in the environment (which keeps it off the command line)."
    )


# ---- the page's inputs -----------------------------------------------------------------


WHOLE = {
    "seed": (0, SEED_MAX),
    "grid size": (1, MAX_GRID),
    "steps": (MIN_STEPS, MAX_STEPS),
    "search steps": (MIN_SEARCH, MAX_SEARCH),
    "restarts": (1, MAX_RESTARTS),
}


def check_input(label: str, value: Any, options: Sequence[str] = ()) -> Any:
    """One value from the page (or a script through the API), checked before it reaches G.

    `label` is what the page calls the input: "seed" (and "from seed", "to seed"), "grid
    size" and "steps" take a whole number in WHOLE's range; "position" a finite number in
    [0, 1]; "truncation" one in [0, MAX_TRUNCATION]; "spherical" true or false; "class" one
    of `options`, or None. Returns the value as the drawing takes it (int, float, bool, str
    or None); GanError, one line naming the input and what it takes, otherwise. Text is never quoted back: the page shows messages
    as HTML.
    """
    if label == "class":
        if value is None or (isinstance(value, str) and value in options):
            return value
        raise GanError(f"class must be one of: {', '.join(options)}.")
    if label == "spherical":
        if isinstance(value, bool):
            return value
        raise GanError("spherical must be true or false.")
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    try:
        got = "" if number is None else f", not {number:.6g}"
    except OverflowError:  # an int beyond any float
        got = ""
    if label == "position":
        if number is not None and math.isfinite(number) and 0 <= number <= 1:
            return float(number)
        raise GanError(f"position must be a number from 0 to 1{got}.")
    if label == "truncation":
        if number is not None and math.isfinite(number) and 0 <= number <= MAX_TRUNCATION:
            return float(number)
        raise GanError(f"truncation ψ must be a number from 0 to {MAX_TRUNCATION:g}{got}.")
    low, high = WHOLE["seed" if label.endswith("seed") else label]
    whole = isinstance(number, int) or (
        isinstance(number, float) and math.isfinite(number) and number.is_integer()
    )
    if whole and low <= number <= high:
        return int(number)
    bounds = f"{low} to {high}" + (" (2**63 - 1)" if high == SEED_MAX else "")
    raise GanError(f"{label} must be a whole number from {bounds}{got}.")


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` as a gradio handler: a GanError (a bad input) reaches the page as a gr.Error with
    its one line; any other exception is logged here with its traceback, and the page gets
    FAILED, never the exception's text (gr.Error shows even with show_error=False)."""
    import gradio as gr

    @functools.wraps(fn)  # gradio reads the inputs off fn's signature
    def handler(*args: Any) -> Any:
        try:
            return fn(*args)
        except gr.Error:
            raise
        except GanError as err:
            line = " ".join(str(err).split())
            raise gr.Error(html.escape(line, quote=False), print_exception=False) from None
        except Exception:
            log.exception("the app's %s failed", fn.__name__)
            raise gr.Error(FAILED, print_exception=False) from None

    return handler


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


def held_out(config_text: str | None) -> tuple[int, int] | None:
    """The run's (data.val_size, seed) from its config.yaml's text (read as data: YAML's
    safe loader, numbers only); None when absent or not plain integers."""
    import yaml

    try:
        saved = yaml.safe_load(config_text or "")
        pair = (saved["data"]["val_size"], saved["seed"])
    except (yaml.YAMLError, KeyError, TypeError):
        return None
    ok = all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pair)
    return pair if ok and pair[0] > 0 else None


# ---- the app ---------------------------------------------------------------------------


def build(module: GAN, ckpt: Path, cfg: DictConfig) -> gr.Blocks:
    """The gradio app for `module`, loaded from `ckpt`; `cfg` holds the app's options."""
    import gradio as gr

    from gan.training.hub import recorded_truncation

    ema = cfg.ema
    psi = min(recorded_truncation(ckpt), MAX_TRUNCATION)  # the sliders' start: a folder's ψ
    k = num_classes(module)
    config_text, result = run_files(ckpt)
    gauge = Gauge(module, held_out(config_text))
    projector = Projector(module, ema)
    model = module.cfg.model
    weights = "G itself" if module.ema_generator is None or ema is False else "its EMA weights"
    classes = f", conditional on {k} classes" if k else ""
    about = (
        f"`{ckpt}`: the `{model.name}` generator ({model.img_size} px) after "
        f"{module.iteration:,} iterations, {weights}{classes}."
    )

    options = [PER_ROW, *map(str, range(k))]
    next_seed = (cfg.seed + 1) % (SEED_MAX + 1)
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\n{about}")
        picker = gr.Dropdown(
            options,
            value=PER_ROW,
            label="class",
            visible=k > 0,  # unconditional models take no label
        )
        with gr.Tab("Samples"):
            with gr.Row():
                seed = gr.Number(cfg.seed, precision=0, label="seed", minimum=0)
                new_seed = gr.Button("new seed")
                side = gr.Slider(1, MAX_GRID, value=cfg.grid, step=1, label="grid size")
                truncation = gr.Slider(
                    0, MAX_TRUNCATION, value=psi, step=0.05, label="truncation ψ (1: off)"
                )
            grid = gr.Image(
                sample_grid(module, cfg.seed, side.value, PER_ROW, ema, psi),
                label="samples",
                format="png",
                image_mode=None,
                interactive=False,
            )
        with gr.Tab("Interpolation"):
            with gr.Row():
                seed_a = gr.Number(cfg.seed, precision=0, label="from seed", minimum=0)
                seed_b = gr.Number(next_seed, precision=0, label="to seed", minimum=0)
                steps = gr.Slider(MIN_STEPS, MAX_STEPS, value=10, step=1, label="steps")
                spherical = gr.Checkbox(False, label="spherical (slerp)")
                walk_psi = gr.Slider(
                    0, MAX_TRUNCATION, value=psi, step=0.05, label="truncation ψ (1: off)"
                )
            first_path, first_frame = interpolation(
                module, cfg.seed, next_seed, steps.value, False, 0.5, PER_ROW, ema, psi
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
                f"{gauge.samples:,} samples (the run's metrics.num_samples) through the "
                f"project's classifier: do they cover every class, and how far are they from "
                f"the real digits? At seed {gauge.seed} (the run's metrics.seed), one row per "
                f"class, they are the samples its validation scored."
            )
            with gr.Row():
                gauge_seed = gr.Number(gauge.seed, precision=0, label="seed", minimum=0)
                measure = gr.Button("measure")
            gauge_note = gr.Markdown("Press *measure* (a few seconds on a CPU).")
            gauge_plot = gr.Image(
                label="class histogram", format="png", image_mode=None, interactive=False
            )
            gauge_json = gr.JSON(label="scores")
        with gr.Tab("Project"):
            gr.Markdown(
                "Draw a digit, or upload a small picture of one (PNG or JPEG, at most 1 MB): "
                "the search finds the latent whose image is nearest (pixel error plus the "
                "project classifier's features), across every class for a conditional G "
                "unless the class picker names one."
            )
            with gr.Row():
                sketch = gr.Sketchpad(
                    label="draw a digit",
                    type="numpy",
                    image_mode="RGBA",
                    canvas_size=(280, 280),
                    brush=gr.Brush(colors=["#000000"], default_size=18, color_mode="fixed"),
                )
                # A file, not gr.Image: gradio hands over the path undecoded, and the
                # picture is decoded as `python -m gan.project` decodes it (PIL, a few formats).
                upload = gr.File(
                    label="or upload a picture (PNG, JPEG, BMP, GIF, WebP; at most 1 MB)",
                    file_types=[".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"],
                    type="filepath",
                )
            with gr.Row():
                search_steps = gr.Slider(
                    MIN_SEARCH, MAX_SEARCH, value=150, step=10, label="search steps"
                )
                restarts = gr.Slider(1, MAX_RESTARTS, value=4, step=1, label="restarts")
                find = gr.Button("find it in G", variant="primary")
            match = gr.Image(
                label="your digit, prepared as MNIST's | the nearest digit G draws",
                format="png",
                image_mode=None,
                interactive=False,
            )
            match_note = gr.Markdown()
            search_path = gr.Image(
                label="the search: from a random z to the one found",
                format="png",
                image_mode=None,
                interactive=False,
            )
            found = gr.State(None)  # {"z": [...], "label": class or -1} of the last match
            send = gr.Button("use the found z in Samples and Interpolation")
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

        # The handlers take the raw values (preprocess=False below): check_input alone
        # decides what is valid, so a bad value is a one-line message, not a crash in
        # gradio's own conversion (int(round(nan)), say).
        @friendly
        def draw_grid(s: Any, n: Any, choice: Any = None, p: Any = 1.0) -> np.ndarray:
            s, n = check_input("seed", s), check_input("grid size", n)
            choice, p = check_input("class", choice, options), check_input("truncation", p)
            return sample_grid(module, s, n, choice, ema, p)

        @friendly
        def draw_walk(
            a: Any, b: Any, n: Any, sph: Any, t: Any, choice: Any = None, p: Any = 1.0
        ) -> tuple[np.ndarray, np.ndarray]:
            a, b = check_input("from seed", a), check_input("to seed", b)
            n, sph = check_input("steps", n), check_input("spherical", sph)
            t, choice = check_input("position", t), check_input("class", choice, options)
            return interpolation(module, a, b, n, sph, t, choice, ema, check_input("truncation", p))

        @friendly
        def draw_frame(
            a: Any, b: Any, n: Any, sph: Any, t: Any, choice: Any, p: Any = 1.0
        ) -> np.ndarray:
            return draw_walk(a, b, n, sph, t, choice, p)[1]

        @friendly
        def reroll() -> int:
            return random.randrange(2**31)

        @friendly
        def read_gauge(s: Any, choice: Any = None) -> tuple[str, Any, dict[str, Any]]:
            s, choice = check_input("seed", s), check_input("class", choice, options)
            problem = gauge.ready()
            if problem is not None:
                return problem, None, {}
            scores = gauge.read(s, choice, ema)
            plot = histogram(scores["class_share"], scores["real"]["class_share"])
            return gauge_table(scores), plot, scores

        @friendly
        def project_digit(
            drawing: Any, picture: Any, n: Any, r: Any, choice: Any = None
        ) -> tuple[np.ndarray, str, np.ndarray, dict[str, Any]]:
            n, r = check_input("search steps", n), check_input("restarts", r)
            choice = check_input("class", choice, options)
            pixels = drawn(drawing, picture)  # (H, W) grey in [0, 1]
            pair, strip_, latent, line = projector.find(pixels, n, r, choice)
            return pair, line, strip_, latent

        @friendly
        def use_found(
            latent: Any, s: Any, n: Any, b: Any, m: Any, sph: Any, t: Any
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            s, n = check_input("seed", s), check_input("grid size", n)
            b, m = check_input("to seed", b), check_input("steps", m)
            sph, t = check_input("spherical", sph), check_input("position", t)
            picture = grid_with_found(module, latent, s, n, ema)
            return (picture, *walk_from_found(module, latent, b, m, sph, t, ema))

        grid_in = [seed, side, picker, truncation]
        walk_in = [seed_a, seed_b, steps, spherical, position, picker, walk_psi]
        # Each drawing has one named endpoint (for scripts and gradio_client); the other
        # triggers of the same function stay private.
        raw = {"preprocess": False}  # the handlers check their inputs themselves
        seed.change(draw_grid, grid_in, grid, api_name="grid", **raw)
        # The first pictures are drawn above, into the page itself: no request on load.
        for trigger in (side.change, picker.change, truncation.change):
            trigger(draw_grid, grid_in, grid, api_visibility="private", **raw)
        new_seed.click(reroll, None, seed, api_visibility="private")  # seed.change redraws
        seed_a.change(draw_walk, walk_in, [strip, frame], api_name="interpolate", **raw)
        for trigger in (seed_b.change, steps.change, spherical.change, walk_psi.change):
            trigger(draw_walk, walk_in, [strip, frame], api_visibility="private", **raw)
        position.change(draw_frame, walk_in, frame, api_visibility="private", **raw)
        measure.click(
            read_gauge,
            [gauge_seed, picker],
            [gauge_note, gauge_plot, gauge_json],
            api_name="gauge",
            **raw,
        )
        # gradio decodes the sketchpad's canvas into numpy (preprocess) and hands over an
        # uploaded file's path; its upload route has refused anything over 1 MB already.
        find.click(
            project_digit,
            [sketch, upload, search_steps, restarts, picker],
            [match, match_note, search_path, found],
            api_name="project",
        )
        send.click(
            use_found,
            [found, seed, side, seed_b, steps, spherical, position],
            [grid, strip, frame],
            api_visibility="private",
        )
    return app


def drawn(drawing: Any, picture: Any) -> Any:
    """The Project tab's picture as grey (H, W) in [0, 1]: the uploaded file when there is
    one (checked and decoded as `python -m gan.project` does), else the sketchpad's
    composite (numpy (H, W, 4|3) or (H, W) uint8); GanError when neither holds a picture."""
    import numpy as np
    import torch

    if isinstance(picture, str) and picture:
        return read_picture(picture)
    image = drawing.get("composite") if isinstance(drawing, dict) else drawing
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise GanError("nothing to find: draw a digit on the canvas, or upload a picture.")
    x = torch.from_numpy(np.ascontiguousarray(image)).float() / 255  # (H, W[, C])
    if x.dim() == 2:
        x = x[..., None]
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, 3)
    if x.shape[-1] == 3:
        x = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)  # opaque
    if x.shape[-1] != 4:
        raise GanError("the drawing is not an image of 1, 3 or 4 channels: draw again.")
    return grey(x)


def serve(cfg: DictConfig, auth: tuple[str, str] | None = None) -> None:
    """Load the checkpoint, build the app and serve it until interrupted; `auth`: the
    (user, password) the page asks for, from `parse` (None: no login)."""
    from gan.training.checkpoints import check_ckpt, load_gan

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
    app.queue(max_size=MAX_QUEUE)  # more waiting requests than this are turned away at once
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
            auth=auth,
            show_error=False,  # exception text stays in the log; `friendly` says what to show
            max_file_size=MAX_UPLOAD,
        )
    except OSError as e:
        where = f"{cfg.host}:{cfg.port or '7860..'}"
        raise GanError(
            f"cannot serve on {where} ({first_line(e)}): pick another port=..."
        ) from None


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: parse key=value arguments, serve; GanError -> `error: ...`, exit 1."""
    command(argv, __doc__, lambda args: serve(*parse(args)))
