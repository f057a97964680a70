"""`python -m gan.app`: the app served for real, driven by gradio_client and a headless Chromium.

    pytest tests/test_app.py

The checkpoint is an untrained mlp GAN in a run folder (nothing trains but the tiny
classifier, one epoch on 64 images); the app runs in a subprocess on a free local port.
The Chromium test needs Debian's `chromium` (`.ci/run` installs it) and is skipped without.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf

from gan.tools.app import (
    AUTH_ENV,
    FAILED,
    MAX_GRID,
    MAX_QUEUE,
    MAX_UPLOAD,
    SEED_MAX,
    check_input,
    credentials,
    friendly,
    main,
    parse,
    run_files,
)
from gan.tools.explore import PER_ROW, Gauge, class_labels, interpolation, sample_grid
from gan.tools.sample import load_gan
from gan.utils.errors import GanError
from tests.helpers import TINY, cli_env, cli_error, compose_cfg, save_untrained, start_cli

pytest.importorskip("gradio", reason='the app extra: pip install -e ".[app]"')

SCALE, PAD, SIZE = 3, 2, 28  # gan.tools.app's upscaling and padding; the mlp's image size
STARTUP_S = 90  # importing torch, lightning and gradio on a busy 2-core machine


def tile(n: int) -> int:
    """Pixels along n images of a make_grid row (padding before each and after the last)."""
    return (n * (SIZE + PAD) + PAD) * SCALE


@pytest.fixture(scope="module")
def run_dir(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder: an untrained mlp checkpoint, config.yaml, result.json, and the cached
    classifier of its data (so the gauge can read)."""
    from gan.metrics.classifier import load_or_train

    cfg = compose_cfg(*TINY, f"data.root={tiny_root}", "model=mlp")
    run = tmp_path_factory.mktemp("run")
    save_untrained(cfg, run / "checkpoints" / "last.ckpt")
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (run / "result.json").write_text(json.dumps({"val/fid": 123.4, "val/coverage": 3.0}))
    load_or_train(
        str(tiny_root), cfg.data.split, max_epochs=1, accelerator="cpu", progress_bar=False
    )
    return run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The app on a free port of 127.0.0.1, in a subprocess; yields its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("app") / "app.log"
    env = cli_env(GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    with log.open("w") as out:
        proc = start_cli(
            "gan.app",
            f"ckpt={run_dir}",
            f"port={port}",
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited with {proc.returncode}:\n{log.read_text()}")
            try:
                urllib.request.urlopen(url, timeout=2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the app did not answer in {STARTUP_S} s:\n{log.read_text()}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def client(server: str) -> Any:  # a gradio_client.Client
    from gradio_client import Client

    return Client(server, verbose=False)


def picture(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("L"))


# ---- through the server ----------------------------------------------------------------


def test_grid_has_its_shape_and_follows_the_seed(client: Any) -> None:
    a = picture(client.predict(3, 4, None, api_name="/grid"))
    assert a.shape == (tile(4), tile(4))
    assert np.array_equal(a, picture(client.predict(3, 4, None, api_name="/grid")))
    assert not np.array_equal(a, picture(client.predict(4, 4, None, api_name="/grid")))
    assert picture(client.predict(3, 2, None, api_name="/grid")).shape == (tile(2), tile(2))


def test_interpolation_strip_and_slider(client: Any) -> None:
    strip, frame = map(picture, client.predict(0, 1, 10, False, 0.0, None, api_name="/interpolate"))
    assert strip.shape == (tile(1), tile(10))
    assert frame.shape == (SIZE * SCALE, SIZE * SCALE)  # make_grid leaves one image unpadded
    rows = slice(PAD * SCALE, (PAD + SIZE) * SCALE)
    first = strip[rows, PAD * SCALE : (PAD + SIZE) * SCALE]
    last = strip[rows, -(PAD + SIZE) * SCALE : -PAD * SCALE]
    assert np.array_equal(frame, first)  # position 0 is the first seed's image
    _, end = map(picture, client.predict(0, 1, 10, False, 1.0, None, api_name="/interpolate"))
    assert np.abs(end.astype(int) - last).max() <= 1  # position 1: the second seed's image
    _, mid_lin = map(picture, client.predict(0, 1, 10, False, 0.5, None, api_name="/interpolate"))
    _, mid_sph = map(picture, client.predict(0, 1, 10, True, 0.5, None, api_name="/interpolate"))
    assert not np.array_equal(mid_lin, mid_sph)
    other, _ = map(picture, client.predict(5, 1, 10, False, 0.0, None, api_name="/interpolate"))
    assert not np.array_equal(strip, other)


def test_the_truncation_sliders(client: Any) -> None:
    """ψ is the last input of /grid and /interpolate; left out, gradio_client sends 1 (off)."""
    plain = picture(client.predict(3, 4, None, api_name="/grid"))
    assert np.array_equal(plain, picture(client.predict(3, 4, None, 1.0, api_name="/grid")))
    mean = picture(client.predict(3, 4, None, 0.0, api_name="/grid"))  # G(0) in every cell
    assert not np.array_equal(plain, mean)
    assert np.array_equal(mean, picture(client.predict(4, 4, None, 0.0, api_name="/grid")))
    walk = (0, 1, 10, False, 0.5, None)
    strip, _ = map(picture, client.predict(*walk, api_name="/interpolate"))
    low, _ = map(picture, client.predict(*walk, 0.5, api_name="/interpolate"))
    assert not np.array_equal(strip, low)


def test_gauge_reads_scores_and_histogram(client: Any) -> None:
    note, plot, scores = client.predict(0, None, api_name="/gauge")
    assert "FID-like" in note and "real data" in note
    assert picture(plot).ndim == 2
    assert scores["samples"] == 64  # the run's metrics.num_samples (TINY's)
    assert len(scores["class_share"]) == 10 and abs(sum(scores["class_share"]) - 1) < 1e-3
    assert 0 <= scores["coverage"] <= 10 and scores["fid"] > 0
    assert {"fid_floor", "kid_floor", "mnist_score", "coverage"} <= scores["real"].keys()


def test_bad_inputs_get_one_line_and_the_server_goes_on(client: Any) -> None:
    from gradio_client.exceptions import AppError

    def error(*args: Any, api_name: str) -> str:
        with pytest.raises(AppError) as info:
            client.predict(*args, api_name=api_name)
        message = info.value.message
        assert message is not None and "\n" not in message and "Traceback" not in message
        return message

    assert error(1e30, 4, None, api_name="/grid") == (
        f"seed must be a whole number from 0 to {SEED_MAX} (2**63 - 1), not 1e+30."
    )
    assert "seed must be a whole number" in error(-1, 4, None, api_name="/grid")
    assert "grid size must be a whole number from 1 to 16" in error(3, 500, None, api_name="/grid")
    # An unconditional checkpoint: the picker has one option, and no class indices.
    assert error(3, 4, "7", api_name="/grid") == "class must be one of: one row per class."
    walk = (0, 1, 10, False, 0.5, None)
    assert "steps must be" in error(*walk[:2], 10**6, *walk[3:], api_name="/interpolate")
    assert "position must be a number from 0 to 1, not 2" in error(
        *walk[:4], 2, None, api_name="/interpolate"
    )
    assert "to seed must be" in error(0, 2**63, *walk[2:], api_name="/interpolate")
    assert "seed must be" in error(1e30, None, api_name="/gauge")
    # The server is still up and still draws.
    assert picture(client.predict(3, 2, None, api_name="/grid")).shape == (tile(2), tile(2))


def test_project_finds_a_drawn_digit(client: Any, tmp_path: Path) -> None:
    """The Project tab's endpoint: a stroke drawn as a numpy image (black on the sketchpad's
    white) -> the prepared digit beside its match, and the search's strip; a blank canvas
    gets one line."""
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError
    from PIL import Image

    canvas = np.full((280, 280, 4), 255, dtype=np.uint8)  # an opaque white sketchpad
    canvas[40:60, 80:220, :3] = 0  # a 7: the bar
    for y in range(60, 240):  # and the slanted stroke
        x = 210 - (y - 60) // 2
        canvas[y, x - 9 : x + 9, :3] = 0
    path = tmp_path / "drawn.png"
    Image.fromarray(canvas).save(path)
    sketch = {"background": None, "layers": [], "composite": handle_file(str(path))}
    # The found z goes into a gr.State, which the API leaves out: three outputs.
    pair, note, strip = client.predict(sketch, None, 20, 2, None, api_name="/project")
    pair, strip = picture(pair), picture(strip)
    assert pair.shape == (tile(1), tile(2))  # the prepared digit | the match
    assert strip.shape[0] == tile(1) and strip.shape[1] > tile(2)
    digit = pair[: tile(1), : tile(1)]
    assert digit.max() > 200 and digit[: SCALE * 4].max() < 60  # white ink on black, centred
    assert "Pixel error (MSE" in note
    # The same picture uploaded as a file: decoded as `python -m gan.project` decodes it.
    uploaded, _, _ = client.predict(None, handle_file(str(path)), 20, 2, None, api_name="/project")
    assert np.array_equal(picture(uploaded)[: tile(1), : tile(1)], digit)
    Image.fromarray(np.full((280, 280, 4), 255, dtype=np.uint8)).save(tmp_path / "blank.png")
    blank = {
        "background": None,
        "layers": [],
        "composite": handle_file(str(tmp_path / "blank.png")),
    }
    with pytest.raises(AppError) as info:
        client.predict(blank, None, 20, 2, None, api_name="/project")
    assert "blank" in (info.value.message or "") and "Traceback" not in (info.value.message or "")
    with pytest.raises(AppError) as info:
        client.predict(sketch, None, 10**6, 2, None, api_name="/project")
    message = info.value.message or ""  # gradio's slider or check_input: either bounds it
    assert "300" in message and "\n" not in message and "Traceback" not in message


def test_nan_and_inf_get_one_line(server: str) -> None:
    """gradio_client will not send NaN, but the server parses it: a raw request can."""
    import httpx

    for api, data, expected in [
        ("grid", "[NaN, 4, null, 1]", "seed must be a whole number from 0 to"),
        (
            "grid",
            "[3, 4, null, NaN]",
            "must be a number from 0 to 1.5, not nan",
        ),  # ψ arrives JSON-escaped
        ("interpolate", "[0, 1, 10, false, Infinity, null, 1]", "position must be a number from 0"),
    ]:
        url = f"{server}gradio_api/call/{api}"
        body = f'{{"data": {data}}}'
        posted = httpx.post(url, content=body, headers={"content-type": "application/json"})
        assert posted.status_code == 200, posted.text
        events = httpx.get(f"{url}/{posted.json()['event_id']}", timeout=60).text
        assert "event: error" in events and expected in events, events
        assert "Traceback" not in events and "ValueError" not in events


def test_upload_route_refuses_large_files(server: str) -> None:
    import httpx

    url = f"{server}gradio_api/upload"
    big = httpx.post(url, files={"files": ("big.bin", b"\0" * (MAX_UPLOAD + 1))}, timeout=30)
    assert big.status_code == 413 and "maximum allowed size" in big.text
    small = httpx.post(url, files={"files": ("small.txt", b"hello")}, timeout=30)
    assert small.status_code == 200 and len(small.json()) == 1


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="no chromium (apt-get install chromium)")
def test_page_in_a_headless_browser(server: str, tmp_path: Path) -> None:
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
    args += ["--hide-scrollbars", "--virtual-time-budget=15000", "--window-size=1280,1100"]
    dom = subprocess.run(
        [*args, "--dump-dom", server], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    for text in ("GAN explorer", "new seed", "grid size", "Interpolation", "Collapse gauge"):
        assert text in dom, f"{text!r} is not on the page"
    # The sample grid is in the page from the start: an image the server hands out.
    src = dom.split('<img src="', 1)[1].split('"', 1)[0]
    assert src.startswith(server) and src.endswith(".png")
    with urllib.request.urlopen(src, timeout=10) as response:
        (tmp_path / "grid.png").write_bytes(response.read())
    assert picture(str(tmp_path / "grid.png")).shape == (tile(8), tile(8))  # grid=8 by default
    shot = tmp_path / "page.png"
    subprocess.run([*args, f"--screenshot={shot}", server], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000  # a blank page is ~3 KB


# ---- without a server ------------------------------------------------------------------


def test_drawing_functions(run_dir: Path) -> None:
    module = load_gan(run_dir)
    assert sample_grid(module, 0, 3).shape == (tile(3), tile(3))
    strip, frame = interpolation(module, 0, 1, 5, True, 0.3)
    assert strip.shape == (tile(1), tile(5)) and frame.shape == (SIZE * SCALE, SIZE * SCALE)
    assert class_labels(module, None, 6, 3) is None  # unconditional: no labels at all


def test_class_picker_labels(make_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    module = load_gan(
        save_untrained(make_cfg("model=mlp", "condition=concat"), tmp_path / "c.ckpt")
    )
    assert module.num_classes == 10
    assert class_labels(module, None, 6, 3).tolist() == [0, 0, 0, 1, 1, 1]  # one row per class
    assert class_labels(module, "7", 4, 2).tolist() == [7] * 4
    rows = sample_grid(module, 0, 3)  # rows of classes 0, 1, 2
    assert rows.shape == (tile(3), tile(3))
    assert not np.array_equal(rows, sample_grid(module, 0, 3, "7"))  # the label matters


def test_run_files(run_dir: Path, tmp_path: Path) -> None:
    config, result = run_files(run_dir / "checkpoints" / "last.ckpt")
    assert "model:" in config and result == {"val/fid": 123.4, "val/coverage": 3.0}
    assert run_files(tmp_path / "loose.ckpt") == (None, None)


def test_gauge_without_classifier_or_data(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_gan(run_dir)
    monkeypatch.setenv("GAN_CACHE", str(tmp_path / "empty-cache"))
    problem = Gauge(module).ready()
    assert "No cached classifier" in problem and "python -m gan.classifier data.root=" in problem
    module.cfg.metrics.root = str(tmp_path / "no-data")
    assert "not on disk" in Gauge(module).ready()
    assert not (tmp_path / "empty-cache").exists()  # nothing was trained


def test_check_input() -> None:
    assert check_input("seed", 0) == 0 and check_input("seed", SEED_MAX) == SEED_MAX
    assert check_input("from seed", 7.0) == 7 and isinstance(check_input("seed", 7.0), int)
    assert check_input("grid size", MAX_GRID) == MAX_GRID and check_input("steps", 24) == 24
    assert check_input("position", 0) == 0.0 and check_input("position", 1.0) == 1.0
    assert check_input("spherical", True) is True
    assert check_input("class", None) is None and check_input("class", "3", ["a", "3"]) == "3"
    bad = [
        ("seed", 1e30, "seed must be a whole number from 0 to 9223372036854775807"),
        ("seed", -1, "not -1."),
        ("seed", SEED_MAX + 1, "(2**63 - 1), not 9.22337e+18."),
        ("seed", 10**400, "seed must be a whole number from 0 to"),
        ("to seed", math.nan, "to seed must be a whole number"),
        ("seed", math.inf, "not inf."),
        ("seed", 2.5, "not 2.5."),
        ("seed", "3", "seed must be a whole number from 0 to"),
        ("seed", None, "seed must be a whole number"),
        ("seed", True, "seed must be a whole number"),
        ("grid size", 0, "grid size must be a whole number from 1 to 16, not 0."),
        ("grid size", MAX_GRID + 1, "from 1 to 16"),
        ("steps", 1, "steps must be a whole number from 2 to 24, not 1."),
        ("steps", 10**9, "from 2 to 24"),
        ("position", 1.01, "position must be a number from 0 to 1, not 1.01."),
        ("position", -0.1, "from 0 to 1"),
        ("position", math.nan, "not nan."),
        ("position", "0.5", "position must be a number from 0 to 1."),
        ("spherical", "yes", "spherical must be true or false."),
        ("spherical", 1, "true or false"),
        ("class", "<b>x</b>", "class must be one of: a, 3."),
        ("class", ["3"], "one of"),
    ]
    for label, value, expected in bad:
        with pytest.raises(GanError) as info:
            check_input(label, value, ["a", "3"])
        message = str(info.value)
        assert expected in message and "\n" not in message, (label, value, message)
        assert "<b>" not in message  # text from the page is never quoted back


def test_handlers_show_one_line_never_the_exception(caplog: pytest.LogCaptureFixture) -> None:
    import gradio as gr

    @friendly
    def broken(seed: Any) -> None:
        check_input("seed", seed)
        raise RuntimeError("secret detail at /home/someone/model.ckpt")

    with pytest.raises(gr.Error) as info:
        broken(-5)
    assert (
        info.value.message
        == f"seed must be a whole number from 0 to {SEED_MAX} (2**63 - 1), not -5."
    )
    with caplog.at_level(logging.ERROR, logger="gan.app"), pytest.raises(gr.Error) as info:
        broken(5)
    assert info.value.message == FAILED and "secret" not in FAILED
    assert "secret detail" in caplog.text and "Traceback" in caplog.text  # in the server's log

    @friendly
    def markup() -> None:
        raise GanError("a <run>/checkpoints folder\nand a second line")

    with pytest.raises(gr.Error) as info:
        markup()
    assert info.value.message == "a &lt;run&gt;/checkpoints folder and a second line"


def test_auth_is_parsed_and_the_password_never_echoed(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "::1", "localhost", "LOCALHOST"):
        assert credentials(None, host, False, {}) is None  # this machine only: no login
    assert credentials("ann:s3:cr${e}t", "0.0.0.0", False, {}) == ("ann", "s3:cr${e}t")
    assert credentials(None, "0.0.0.0", True, {AUTH_ENV: "bob:pw"}) == ("bob", "pw")
    assert credentials("ann:x", "0.0.0.0", False, {AUTH_ENV: "bob:pw"}) == ("ann", "x")
    assert credentials("ann:x", "127.0.0.1", False, {}) == ("ann", "x")  # asked for: kept
    ckpt = str(tmp_path / "last.ckpt")
    cfg, auth = parse([f"ckpt={ckpt}", "host=0.0.0.0", "auth=ann:p[w]{x}"], {})
    assert auth == ("ann", "p[w]{x}") and cfg.auth is None and cfg.host == "0.0.0.0"
    assert parse([f"ckpt={ckpt}"], {AUTH_ENV: ""})[1] is None  # an empty variable: unset
    for given in ("annsecret", ":secret", "ann:", ""):
        with pytest.raises(GanError) as info:
            credentials(given, "0.0.0.0", False, {})
        assert "auth= is malformed: it must be user:password" in str(info.value)
        assert given in ("", "ann:") or "secret" not in str(info.value)
    with pytest.raises(GanError, match=f"^{AUTH_ENV} is malformed"):
        credentials(None, "127.0.0.1", False, {AUTH_ENV: "nocolon"})


def test_exposed_app_refuses_to_start_without_auth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(AUTH_ENV, raising=False)
    ckpt = f"ckpt={tmp_path / 'nope.ckpt'}"  # never read: the refusal comes first
    message = error_of(ckpt, "host=0.0.0.0")
    assert "host=0.0.0.0 makes the app reachable from other machines" in message
    assert f"auth=user:password, or set {AUTH_ENV}=user:password" in message
    assert "share=true puts the app on a public gradio.live link" in error_of(ckpt, "share=true")
    assert "is malformed" in error_of(ckpt, "host=0.0.0.0", "auth=hunter2")
    assert "hunter2" not in error_of(ckpt, "host=0.0.0.0", "auth=hunter2")
    monkeypatch.setenv(AUTH_ENV, "ann:pw")
    assert "does not exist" in error_of(ckpt, "host=0.0.0.0")  # past the check, on to the file


def test_launch_gets_auth_and_limits(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gradio as gr

    launched: dict[str, Any] = {}
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.update(kwargs))
    queue = gr.Blocks.queue
    monkeypatch.setattr(
        gr.Blocks,
        "queue",
        lambda self, **kwargs: launched.update(queue=kwargs) or queue(self, **kwargs),
    )
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv(AUTH_ENV, "bob:env-pw")
    main([f"ckpt={run_dir}", "host=0.0.0.0", "auth=ann:s3cret", "seed=" + str(SEED_MAX)])
    assert launched["server_name"] == "0.0.0.0" and launched["auth"] == ("ann", "s3cret")
    assert launched["show_error"] is False and launched["max_file_size"] == MAX_UPLOAD
    assert launched["queue"] == {"max_size": MAX_QUEUE}
    main([f"ckpt={run_dir}", "share=true"])
    assert launched["share"] is True and launched["auth"] == ("bob", "env-pw")


def error_of(*args: str) -> str:
    return cli_error(main, *args)


def test_bad_arguments_and_checkpoints(tmp_path: Path) -> None:
    assert "does not exist" in error_of(f"ckpt={tmp_path / 'nope.ckpt'}")
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    assert "is not a checkpoint" in error_of(f"ckpt={text}")
    assert "did you mean port=" in error_of(f"ckpt={text}", "prot=1")
    assert "port=0 is invalid" in error_of(f"ckpt={text}", "port=0")
    assert "share='maybe' is invalid" in error_of(f"ckpt={text}", "share=maybe")
    assert "seed=-1 is invalid: it must be in 0..9223372036854775807" in error_of(
        f"ckpt={text}", "seed=-1"
    )
    assert "seed=9223372036854775808 is invalid" in error_of(f"ckpt={text}", f"seed={2**63}")
    assert "seed='1e30' is invalid" in error_of(f"ckpt={text}", "seed=1e30")
    assert "no checkpoint given" in error_of("port=7860")
    assert "not key=value" in error_of("last.ckpt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.ckpt")
    assert "not a checkpoint of this project" in error_of(f"ckpt={tmp_path / 'other.ckpt'}")


def test_the_gauge_reads_the_runs_own_numbers(make_cfg: Callable[..., DictConfig]) -> None:
    """At the run's metrics.seed, against its held-out reals, the gauge's FID-like score and
    floor are those of the run's last validation (result.json)."""
    from gan.tools.app import held_out, run_files
    from gan.tools.explore import Gauge
    from gan.training.run import train, write_result

    cfg = make_cfg("model=mlp", "trainer.max_epochs=1")
    final: dict[str, float] = {}
    value = train(cfg, final)
    write_result(cfg, "ok", value, 0.0, final=final)
    run = Path(cfg.paths.output_dir)
    final = json.loads((run / "result.json").read_text())["final"]
    module = load_gan(run)
    config_text, _ = run_files(run / "checkpoints" / "last.ckpt")
    gauge = Gauge(module, held_out(config_text))
    scores = gauge.read(gauge.seed, PER_ROW)
    assert scores["samples"] == cfg.metrics.num_samples and scores["note"] == ""
    assert scores["fid"] == pytest.approx(final["val/fid"], rel=1e-4)
    assert scores["real"]["fid_floor"] == pytest.approx(final["val/fid_floor"], abs=1e-4)  # rounded
    # Without the run's config (a bare checkpoint), the gauge says how its numbers differ.
    other = Gauge(module).read(gauge.seed, PER_ROW)
    assert "not the run's held-out ones" in other["note"]
