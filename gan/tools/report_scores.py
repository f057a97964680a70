"""Every scalar a job logged, whatever its logger, for `gan.report`.

The readers are tried in order, and for each name the first one that has it wins:

- `csv/metrics.csv` (logger=csv, the default; logger=many): every logged value.
- `tensorboard/events.out.tfevents.*` (logger=tensorboard): every logged value.
- `wandb/[offline-]run-*/run-<id>.wandb` (logger=wandb): the run's history, read from the
  record file W&B writes even offline (the LevelDB-style log of protobuf records that
  `wandb sync` uploads); `files/wandb-summary.json`, when a run wrote one, adds last values.
- `result.json`, written for every job: the value of its `optimized_metric`, and the
  `final` dict of last `val/*` values when gan.training.run writes one.

Beside them, `cas.json` (written by `python -m gan.cas` into the run folder) adds `cas` and
`cas_real`, one value each.
"""

from __future__ import annotations

import csv
import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Series = dict[str, list[float]]  # name -> logged values, in order

CAS = ("cas", "cas_real")  # gan.cas's scores, read from <job>/cas.json
WANDB_BLOCK = 32768  # the record file's layout: blocks of 32 KiB, each record 7 header bytes
WANDB_HEADER = b":W&B"  # then a 2-byte magic and a 1-byte version


def number(value: Any) -> float | None:
    """A logged scalar as a float (NaN and inf included); None for text, images, tables."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def add(series: Series, key: str, value: Any) -> None:
    x = number(value)
    if key and x is not None:
        series.setdefault(key, []).append(x)


def read_csv(job: Path) -> Series:
    """The columns of the job's CSVLogger file (its first one, as Lightning names it)."""
    series: Series = {}
    for path in sorted(job.glob("csv/**/metrics.csv")):
        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                for key, text in row.items():
                    add(series, key, text)
        break
    return series


def read_tensorboard(job: Path) -> Series:
    """The scalars of the job's TensorBoard event files, oldest file first."""
    files = sorted(job.glob("tensorboard/**/events.out.tfevents.*"))
    if not files:
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: Series = {}
    for path in files:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0, "images": 1})
        try:
            acc.Reload()
        except Exception:  # noqa: BLE001 - a damaged file must not stop the report
            continue
        for tag in acc.Tags().get("scalars", []):
            for event in acc.Scalars(tag):
                add(series, tag, event.value)
    return series


def wandb_records(path: Path) -> Iterator[bytes]:
    """The records of a W&B `run-<id>.wandb` file; stops at a truncated or damaged one."""
    data = path.read_bytes()
    if not data.startswith(WANDB_HEADER):
        return
    pos, record = 7, b""
    while pos + 7 <= len(data):
        if WANDB_BLOCK - pos % WANDB_BLOCK < 7:  # the rest of a block is padding
            pos += WANDB_BLOCK - pos % WANDB_BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 0 or len(chunk) < length:  # zeros at the end, or cut off by a kill
            return
        record = chunk if kind in (1, 2) else record + chunk  # 1 full, 2 first, 3 middle, 4 last
        if kind in (1, 4):
            yield record


def read_wandb_file(path: Path, series: Series) -> None:
    try:
        from google.protobuf.message import DecodeError
        from wandb.proto.wandb_internal_pb2 import Record
    except ImportError:
        return
    for data in wandb_records(path):
        record = Record()
        try:
            record.ParseFromString(data)
        except DecodeError:
            return
        if record.WhichOneof("record_type") == "history":
            for item in record.history.item:
                key = item.key or ".".join(item.nested_key)
                try:
                    value = json.loads(item.value_json or "null")
                except ValueError:
                    continue
                if not key.startswith("_"):
                    add(series, key, value)


def read_wandb(job: Path) -> Series:
    """The history of the job's W&B runs (a resumed job has several), oldest first."""
    runs = [p for p in (job / "wandb").glob("*run-*") if p.is_dir() and not p.is_symlink()]
    series: Series = {}
    for run in sorted(runs, key=lambda p: p.name.split("run-", 1)[-1]):  # by start time
        for path in sorted(run.glob("run-*.wandb")):
            read_wandb_file(path, series)
    for run in runs:  # last values only, for names the history lacks
        summary = run / "files" / "wandb-summary.json"
        try:
            last = json.loads(summary.read_text()) if summary.is_file() else {}
        except ValueError:
            last = {}
        for key, value in last.items():
            if key not in series and not key.startswith("_"):
                add(series, key, value)
    return series


def read_result(result: dict) -> Series:
    """result.json's `final` scores and the value of its `metric`, one value each."""
    series: Series = {}
    for key, value in (result.get("final") or {}).items():
        add(series, key, value)
    metric, value = result.get("metric"), result.get("value")
    if metric and metric not in series:
        add(series, metric, value)
    return series


def read_cas(job: Path) -> Series:
    """`cas` and `cas_real` from the job's cas.json (`python -m gan.cas`), when it has one."""
    series: Series = {}
    try:
        scores = json.loads((job / "cas.json").read_text())
    except (OSError, ValueError):  # none, or unreadable: no CAS columns for this job
        return series
    if isinstance(scores, dict):
        for key in CAS:
            add(series, key, scores.get(key))
    return series


def read_scores(job: Path, result: dict) -> Series:
    """Every scalar the job logged: csv, then TensorBoard, then W&B, then result.json; and
    its cas.json's scores."""
    scores: Series = {}
    logged = (read_csv(job), read_tensorboard(job), read_wandb(job), read_result(result))
    for series in (*logged, read_cas(job)):
        for key, values in series.items():
            scores.setdefault(key, values)
    return scores
