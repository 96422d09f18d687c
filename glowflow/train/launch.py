"""Starting a run as ``glowflow train`` asks: which folder, new or resumed, the restart of a
torchrun job, and the config (defaults < preset < options, or a resumed run's own).

The command line parses its options and hands them here; the decisions are the library's, so
that a script can start runs the way the command does.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from glowflow import distributed
from glowflow.config import BUILTIN_DATASET, TRAIN_PRESETS, TrainConfig
from glowflow.errors import GlowflowError
from glowflow.train.rundir import CONFIG_FILE, RunDir
from glowflow.train.warmstart import source_options

#: Options that may change when a run is resumed; every other one must match the run's config.
RESUMABLE = {
    "steps", "epochs", "max_time", "device", "log_every", "eval_every", "sample_every",
    "checkpoint_every", "tensorboard", "compile", "channels_last", "data_workers",
}  # fmt: skip

#: Minutes of training in the default run (no budget given, the built-in data set, no preset),
#: leaving time for the rest of a 5-minute job.
DEFAULT_MAX_TIME = 4.0


class LaunchError(GlowflowError):
    """A run that cannot be started as asked: the folder options or a resume's changes."""


@dataclasses.dataclass(frozen=True)
class Launch:
    """The settled folder options of a run (see ``plan_launch``).

    Attributes:
        out: the folder of a new run, or None (then ``default_run_dir``).
        resume: the folder of the run to continue, or None.
        overwrite: replace a run already in ``out``.
        preset: the preset a new run starts from (never one for a resumed run).
        restart: torchrun's restart count when this launch resumes the job's own run after a
            process died, else 0.
    """

    out: Path | None = None
    resume: Path | None = None
    overwrite: bool = False
    preset: str | None = None
    restart: int = 0

    def run_dir(self, cfg: TrainConfig) -> Path:
        """The run's folder: the resumed one, ``out``, or a new one for ``cfg``'s data set."""
        return self.resume or self.out or default_run_dir(cfg.dataset)


def elastic_restart(run_dir: str | Path) -> str | None:
    """After torchrun restarted this job, what to do with the run it was writing to ``run_dir``:
    ``"resume"`` from its last checkpoint, ``"overwrite"`` if it died before the first one, or
    None when this is no restart or the folder holds a run that was there before the job."""
    if not distributed.restart_count():
        return None
    folder = RunDir(run_dir)
    try:
        saved = folder.read_config()
    except GlowflowError:
        return None
    if not isinstance(saved, dict) or saved.get("torchelastic_run_id") != distributed.job_id():
        return None
    return "resume" if folder.has_checkpoint() else "overwrite"


def plan_launch(
    out: str | Path | None = None,
    resume: str | Path | None = None,
    overwrite: bool = False,
    preset: str | None = None,
) -> Launch:
    """The run folder options of ``glowflow train --out/--resume/--overwrite/--preset``.

    Under torchrun every process must be told the one folder they share. When torchrun restarts
    a job after a process died, the run the job started in ``out`` is resumed from its last
    checkpoint (``restart`` says so), or started again if it died before the first one. A run
    to resume must hold a run, in its own folder.

    Raises ``LaunchError`` for options that cannot go together.
    """
    out = Path(out) if out else None
    resume = Path(resume) if resume else None
    if distributed.launched_by_torchrun() and not (out or resume):
        raise LaunchError("under torchrun give --out RUN_DIR, the one folder all processes share")
    restart = 0
    if out and not resume:
        plan = elastic_restart(out)
        if plan == "resume":  # torchrun restarted the job after a process died
            restart = distributed.restart_count()
            out, resume, overwrite, preset = None, out, False, None
        elif plan == "overwrite":  # it died before its first checkpoint: start again
            overwrite = True
    if resume:
        if not RunDir(resume).config.is_file():
            raise LaunchError(f"cannot resume: {resume} holds no run (no {CONFIG_FILE})")
        if out and out != resume:
            raise LaunchError("--resume continues the run in its own folder; drop --out")
    return Launch(out, resume, overwrite, preset, restart)


def train_config(
    given: dict[str, Any], preset: str | None = None, resume: str | Path | None = None
) -> TrainConfig:
    """The config of a run: defaults < ``preset`` < the options ``given`` (by field name).

    A run started ``init_from`` a model takes that model's architecture where ``given`` names
    none (defaults < preset < the source < ``given``). A resumed run keeps its own config;
    only ``RESUMABLE`` options may change, and no preset may be given. A new run given no
    budget on the built-in data set without a preset is the default run, of
    ``DEFAULT_MAX_TIME`` minutes; any other run states its budget.
    """
    if resume:
        saved = RunDir(resume).read_config()["train"]
        changed = sorted(k for k, v in given.items() if k not in RESUMABLE and saved.get(k) != v)
        if changed or preset:
            names = ", ".join("--" + k.replace("_", "-") for k in changed) or "--preset"
            raise LaunchError(
                f"{names} differ from the run being resumed; drop them, or start a new run"
            )
        return TrainConfig.from_dict({**saved, **given})
    values = TrainConfig().to_dict()
    if preset:
        values.update(TRAIN_PRESETS[preset])
    if given.get("init_from"):  # its architecture, where the options give none
        values.update(source_options(given["init_from"]))
    values.update(given)
    no_budget = values["steps"] is None and values["epochs"] is None and values["max_time"] is None
    if no_budget and values["dataset"] == BUILTIN_DATASET and not preset:
        values["max_time"] = DEFAULT_MAX_TIME
    return TrainConfig.from_dict(values)


def default_run_dir(dataset: str) -> Path:
    """A new folder under ``runs/`` named for the time and the data set."""
    slug = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in dataset.split("/")[-1])
    return Path("runs") / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug.strip('-')[:40]}"
