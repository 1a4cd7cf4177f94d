"""Experiment trackers (`lab train --tracker tensorboard|wandb`, `lab study --tracker ...`), offline,
optional.

A run logs live (`LiveTracker`, attached to its run directory by `attach`): every metrics.jsonl
line (training and evaluation) as scalars at its step the moment it is written (TensorBoard's
writer is flushed per line, so the curves can be watched while the run trains), the resolved
config at the start and the result's numbers at the end; under OUT/tensorboard/ or OUT/wandb/
(offline). A tracker folder that is new when the run starts first receives the lines metrics.jsonl
already holds (a cooldown branch's seeded steps, a run resumed with a tracker for the first time).

Study cells log the same way, from their worker (`lab.training.train.train`, or the packed trainer
per member), in their own run directory DIR/runs/CELL/, named by the cell and grouped by the study
(wandb's group and project; TensorBoard: a `study` text, and `tensorboard --logdir DIR/runs` shows
the study's cells side by side). The study's results table links each row to its tracker run
(column `tracker_run`). A cell that ended without logging live (its worker found it finished) is
replayed from its run directory instead (`log_run`) into DIR/tracker/. Nothing here needs the
network: TensorBoard event files are written with tensorboardX, wandb runs in offline mode
(`wandb sync` uploads them later).

Neither package is a dependency of the lab (both are in `.[dev]`): `pip install -e ".[tracker]"`
(tensorboardX) or `pip install -e ".[wandb]"`; asking for a tracker whose package is missing is one
line, before any training.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from lab.config import ConfigError

PACKAGES = {
    "tensorboard": ("tensorboardX", 'pip install -e ".[tracker]"  (tensorboardX)'),
    "wandb": ("wandb", 'pip install -e ".[wandb]"  (wandb)'),
}
SKIP_KEYS = {"step", "event", "time"}


def check_available(kind: str) -> None:
    """A ConfigError naming the install command when `kind`'s package is missing."""
    if kind not in PACKAGES:
        raise ConfigError(f"unknown tracker {kind!r}; choose from {', '.join(PACKAGES)}")
    module, install = PACKAGES[kind]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(
            f"--tracker {kind} needs the optional package {module}, which is not installed: {install}"
        )


def _metric_lines(path: Path):
    """(step, {name: number}) per intact line of a metrics.jsonl."""
    if not path.exists():
        return
    for line in path.read_text(errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
            continue
        yield rec["step"], _numbers(rec)


def _numbers(record: dict) -> dict:
    """The record's numeric fields, as floats (step, event and time left out)."""
    return {
        k: float(v)
        for k, v in record.items()
        if k not in SKIP_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def _tensorboard(root: Path, study: str, cell_id: str, config: dict, metrics: Path) -> str:
    from tensorboardX import SummaryWriter

    logdir = root / cell_id
    writer = SummaryWriter(logdir=str(logdir))
    writer.add_text("config", "```\n" + json.dumps(config, indent=1, sort_keys=True) + "\n```", 0)
    writer.add_text("study", study, 0)
    for step, values in _metric_lines(metrics):
        for name, v in values.items():
            writer.add_scalar(name, v, step)
    writer.close()
    return str(logdir)


def _wandb(root: Path, study: str, cell_id: str, config: dict, metrics: Path) -> str:
    import wandb

    run = wandb.init(
        mode="offline", dir=str(root), project=study, group=study, name=cell_id, config=config, reinit=True
    )
    for step, values in _metric_lines(metrics):
        run.log(values, step=step)
    run.finish()
    return str(Path(run.dir).parent)


WRITERS = {"tensorboard": _tensorboard, "wandb": _wandb}


def log_run(kind: str, root: Path, study: str, cell_id: str, run_dir: Path) -> str:
    """Replay one finished run into tracker `kind` under `root`; returns the tracker run's path."""
    root.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    return WRITERS[kind](root, study, cell_id, config, run_dir / "metrics.jsonl")


class LiveTracker:
    """One run logged as it trains, into `kind` under `root`: `log(record)` per metrics line,
    `finish(result)` at the end. `group`: the study (wandb group; TensorBoard text)."""

    def __init__(self, kind: str, root: Path, name: str, config: dict, group: str | None = None):
        check_available(kind)
        root.mkdir(parents=True, exist_ok=True)
        self.kind, self.root = kind, root
        if kind == "tensorboard":
            from tensorboardX import SummaryWriter

            self.writer = SummaryWriter(logdir=str(root), flush_secs=1)
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=1, sort_keys=True) + "\n```", 0)
            if group:
                self.writer.add_text("study", group, 0)
            self.writer.flush()
        else:
            import wandb

            self.run = wandb.init(
                mode="offline",
                dir=str(root),
                project=group or "lab",
                group=group,
                name=name,
                config=config,
                reinit=True,
            )

    def log(self, record: dict) -> None:
        step = record.get("step")
        if isinstance(step, int):
            self.log_values(step, _numbers(record))

    def log_values(self, step: int, values: dict) -> None:
        if self.kind == "tensorboard":
            for name, v in values.items():
                self.writer.add_scalar(name, v, step)
            self.writer.flush()
        else:
            self.run.log(values, step=step)

    def finish(self, result: dict) -> None:
        numbers = {
            f"result/{k}": float(v)
            for k, v in result.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if self.kind == "tensorboard":
            self.writer.add_text(
                "result", "```\n" + json.dumps(result, indent=1, sort_keys=True, default=str) + "\n```", 0
            )
            for k, v in numbers.items():
                self.writer.add_scalar(k, v, 0)
            self.writer.close()
        else:
            self.run.summary.update({**{k[7:]: v for k, v in numbers.items()}, "status": result.get("status")})
            self.run.finish()


def attach(kind: str | None, rundir, cfg, group: str | None = None) -> LiveTracker | None:
    """A live tracker of kind `kind` for the run in `rundir` (a `lab.rundir.RunDir`, config
    `cfg`), listening to its metrics lines, named by the directory and grouped by `group`; None
    without a kind, or on a process that does not write the run. A tracker folder that is new
    first receives the lines metrics.jsonl already holds (a branch's seeded steps)."""
    if not (kind and rundir.writer):
        return None
    root = rundir.path / kind
    earlier = [] if root.exists() else list(_metric_lines(rundir.metrics_file))
    config = {**cfg.to_dict(), "config_hash": cfg.hash()}
    tracker = LiveTracker(kind, root, rundir.path.name, config, group)
    for step, values in earlier:
        tracker.log_values(step, values)
    rundir.listeners.append(tracker.log)
    return tracker


def live_run(kind: str, run_dir: Path) -> Path | None:
    """Where a run directory's live log of tracker `kind` is (TensorBoard: OUT/tensorboard; wandb:
    its newest offline run under OUT/wandb); None when it has none."""
    root = Path(run_dir) / kind
    if kind == "wandb":
        runs = sorted(root.glob("wandb/offline-run-*")) if root.is_dir() else []
        return runs[-1] if runs else None
    return root if root.is_dir() and any(root.glob("events.out.tfevents.*")) else None
