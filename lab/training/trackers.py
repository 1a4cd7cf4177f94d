"""Experiment trackers for studies (`lab study --tracker tensorboard|wandb`), offline, optional.

When a cell finishes, its run directory (config.json and metrics.jsonl, the truth) is replayed into
the tracker as one tracker run named by the cell and grouped by the study: every logged metric as a
scalar at its step, the resolved config as text (TensorBoard) or the run's config (wandb). The
study's results table links each row to its tracker run (column `tracker_run`). Nothing here needs
the network: TensorBoard event files are written with tensorboardX under DIR/tracker/<cell>/,
wandb runs in offline mode under DIR/tracker/ (`wandb sync` uploads them later).

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
        values = {
            k: float(v)
            for k, v in rec.items()
            if k not in SKIP_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        yield rec["step"], values


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
