"""The run folder: one training run's files, each written so that a crash leaves it whole.

``config.json`` (the training and model config and what the data was), ``metrics.jsonl`` (one
JSON record a line), ``checkpoint.pt``, ``summary.json``, ``samples/step_*.png`` and
``learning_curve.png``. The trainer writes them; ``glowflow compare`` and the plots read them.
Their names are written here and nowhere else in ``glowflow.train`` and the CLI: everything
else asks a ``RunDir`` for a file's path. The checkpoint's name is the rule of
``glowflow.hub.checkpoint`` (a folder given as a checkpoint means its ``checkpoint.pt``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

from glowflow.errors import GlowflowError, first_line
from glowflow.files import atomic_write_text
from glowflow.hub.checkpoint import CHECKPOINT_FILE, save_checkpoint
from glowflow.latent.directions import CACHE_FILE as DIRECTION_CACHE

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CURVE_FILE = "learning_curve.png"
#: The attribute directions' cache, which ``glowflow.latent.directions`` keeps beside a
#: checkpoint: stale once the run is replaced.
ATTRIBUTES_FILE = DIRECTION_CACHE
SAMPLES_FOLDER = "samples"
TENSORBOARD_FOLDER = "tensorboard"

#: Files whose presence marks a folder as holding a run.
RUN_FILES = (CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE, SUMMARY_FILE)
#: What else a run writes, removed too when a run is overwritten.
RUN_EXTRAS = (CURVE_FILE, ATTRIBUTES_FILE)
RUN_FOLDERS = (SAMPLES_FOLDER, TENSORBOARD_FOLDER)


class RunDirError(GlowflowError):
    """A run folder that cannot be used or written as asked."""


class RunDir:
    """One run's folder; every write is atomic and every OS error becomes a one-line
    ``RunDirError`` naming the file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def config(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def metrics(self) -> Path:
        return self.path / METRICS_FILE

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY_FILE

    @property
    def learning_curve(self) -> Path:
        return self.path / CURVE_FILE

    @property
    def tensorboard(self) -> Path:
        return self.path / TENSORBOARD_FOLDER

    def sample_path(self, step: int) -> Path:
        return self.path / SAMPLES_FOLDER / f"step_{step:07d}.png"

    def holds_run(self) -> bool:
        return self.path.is_dir() and any((self.path / f).exists() for f in RUN_FILES)

    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    def is_finished(self) -> bool:
        """Whether the run ended on its budget (it wrote its summary)."""
        return self.summary.is_file()

    def check(self, resume: bool, overwrite: bool) -> None:
        """Refuse a folder that cannot take this run, before anything is written."""
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"run folder {self.path} is a file; choose another --out")
        if resume:
            if not self.has_checkpoint():
                raise RunDirError(
                    f"cannot resume: {self.path} has no {CHECKPOINT_FILE}; start a new run"
                )
        elif self.holds_run() and not overwrite:
            raise RunDirError(
                f"run folder {self.path} already holds a run; pass --resume {self.path} to "
                f"continue it or --overwrite to replace it"
            )

    def start(self, record: dict[str, Any], overwrite: bool) -> None:
        """Create the folder and write ``config.json``; an old run is cleared only with
        ``overwrite``, and only now that the new run has been set up without error."""
        try:
            if overwrite and self.holds_run():
                for name in RUN_FILES + RUN_EXTRAS:
                    (self.path / name).unlink(missing_ok=True)
                for name in RUN_FOLDERS:
                    shutil.rmtree(self.path / name, ignore_errors=True)
            self.path.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.config, json.dumps(record, indent=2))
        except OSError as e:
            raise RunDirError(f"cannot write the run folder {self.path}: {first_line(e)}") from e

    def read_config(self) -> dict[str, Any]:
        """``config.json``: the run's ``train`` and ``model`` configs and its ``data``."""
        return self._read_json(self.config, "holds no run")

    def read_summary(self) -> dict[str, Any]:
        """``summary.json``, which a run writes when it ends on its budget."""
        return self._read_json(self.summary, "holds no finished run")

    def _read_json(self, path: Path, missing: str) -> dict[str, Any]:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise RunDirError(f"{self.path} {missing} (no {path.name})") from None
        except (OSError, ValueError) as e:
            raise RunDirError(f"cannot read {path}: {first_line(e)}") from e

    def append_metrics(self, record: dict[str, Any]) -> None:
        self.guard(self.metrics, lambda: self._append(self.metrics, json.dumps(record) + "\n"))

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl`` (a torn last line is ignored; none if absent)."""
        return read_metrics(self.metrics)

    def trim_metrics(self, step: int) -> None:
        """On resume, drop the records written after the checkpoint (they will be redone)."""
        if not self.metrics.exists():
            return
        keep = [r for r in self.read_metrics() if r["step"] <= step]
        text = "".join(json.dumps(r) + "\n" for r in keep)
        self.guard(self.metrics, lambda: atomic_write_text(self.metrics, text))

    def write_summary(self, summary: dict[str, Any]) -> None:
        text = json.dumps(summary, indent=2)
        self.guard(self.summary, lambda: atomic_write_text(self.summary, text))

    def write_checkpoint(self, state: dict[str, Any]) -> None:
        self.guard(self.checkpoint, lambda: save_checkpoint(self.checkpoint, state))

    @staticmethod
    def _append(path: Path, text: str) -> None:
        with open(path, "a") as f:
            f.write(text)

    @staticmethod
    def guard(path: Path, write: Callable[[], Any]) -> Any:
        """``write()``, its OS errors turned into a one-line ``RunDirError`` naming
        ``path``."""
        try:
            return write()
        except OSError as e:
            raise RunDirError(
                f"cannot write {path}: {first_line(e)}; free space or fix the folder's "
                f"permissions, then --resume"
            ) from e


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file: each line's JSON object with an integer
    ``step`` (a torn or foreign line is ignored; none if the file is absent)."""
    records: list[dict[str, Any]] = []
    if not Path(path).exists():
        return records
    try:
        with open(path) as f:
            lines = f.readlines()
    except OSError as e:
        raise RunDirError(f"cannot read {path}: {first_line(e)}") from e
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("step"), int):
            records.append(record)
    return records
