"""`python -m gan.app`: the app served for real, driven by gradio_client and a headless Chromium.

    pytest tests/test_app.py

The checkpoint is an untrained mlp GAN in a run folder (nothing trains but the tiny
classifier, one epoch on 64 images); the app runs in a subprocess on a free local port.
The Chromium test needs Debian's `chromium` (`.ci/run` installs it) and is skipped without.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from gan.app import main, run_files
from gan.config import register
from gan.explore import Gauge, class_labels, interpolation, sample_grid
from gan.sample import load_gan
from tests.conftest import CONF, TINY, cli_error
from tests.test_export import save_untrained

pytest.importorskip("gradio", reason='the app extra: pip install -e ".[app]"')

SCALE, PAD, SIZE = 3, 2, 28  # gan.app's upscaling and padding; the mlp's image size
STARTUP_S = 90  # importing torch, lightning and gradio on a busy 2-core machine


def tile(n: int) -> int:
    """Pixels along n images of a make_grid row (padding before each and after the last)."""
    return (n * (SIZE + PAD) + PAD) * SCALE


@pytest.fixture(scope="module")
def run_dir(tiny_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder: an untrained mlp checkpoint, config.yaml, result.json, and the cached
    classifier of its data (so the gauge can read)."""
    from gan.classifier import load_or_train

    register()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[*TINY, f"data.root={tiny_root}", "model=mlp"])
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
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gan.app", f"ckpt={run_dir}", f"port={port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
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


def test_gauge_reads_scores_and_histogram(client: Any) -> None:
    note, plot, scores = client.predict(0, None, api_name="/gauge")
    assert "FID-like" in note and "real data" in note
    assert picture(plot).ndim == 2
    assert scores["samples"] == 1000
    assert len(scores["class_share"]) == 10 and abs(sum(scores["class_share"]) - 1) < 1e-3
    assert 0 <= scores["coverage"] <= 10 and scores["fid"] > 0
    assert {"fid_floor", "kid_floor", "mnist_score", "coverage"} <= scores["real"].keys()


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
    assert "no checkpoint given" in error_of("port=7860")
    assert "not key=value" in error_of("last.ckpt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.ckpt")
    assert "not a checkpoint of this project" in error_of(f"ckpt={tmp_path / 'other.ckpt'}")
