"""The study's results table: one row per run or cooldown branch, in DIR/results.csv.

The table is derived: each row is rebuilt from its run directory's result.json (the truth) every
time `lab study` runs, so a torn or edited row heals itself. Reading is strict about what it
trusts: a file whose header is not a lab study table (no `cell_id`, or not UTF-8) is refused rather
than overwritten, and a row that is short, long or the unterminated last line of a cut file is
dropped. Only the study's driver writes the table (one driver per directory: `lab.study.lock`),
replacing the whole file atomically (`lab.files`), so readers never see a torn row.

`ResultsTable` is the driver's view of the table: each cell's row and status, rebuilt from the run
directories and updated as cells finish (`lab.study.runner` composes it with the task writer and
the scheduler).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from lab.config import ConfigError
from lab.files import write_text_atomic
from lab.result import FIELDS, FINAL
from lab.rundir import RunDir
from lab.study.spec import Cell, Study

# The study's own columns, the result.json contract of a run, then anything else (sorted).
STUDY_COLUMNS = ("variant", "budget_flops", "branch_of", "pack_id", "error")
COLUMNS = ["study", "cell_id", *FIELDS, *STUDY_COLUMNS]
SKIP = {"mesh"}  # nested values that do not belong in a flat table


def _decode(path: Path) -> str:
    """The file's text; ConfigError unless its header is that of a lab study table."""
    data = path.read_bytes()
    header, newline, _ = data.partition(b"\n")
    try:
        text = header.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path} is not a results table written by lab study (not UTF-8 text); move it "
            "away or use another --out (nothing was changed)"
        ) from None
    if not newline and ",".join(COLUMNS).startswith(text):
        return ""  # empty, or cut inside our own header: nothing to keep
    if "cell_id" not in next(csv.reader([text]), []):
        raise ConfigError(
            f"{path} is not a results table written by lab study (no cell_id column); move it "
            "away or use another --out (nothing was changed)"
        )
    return data.decode("utf-8", errors="replace")  # a damaged body: its rows are rebuilt from the runs


def read_rows(path: Path) -> list[dict]:
    """The intact rows of a results table ([] when there is none)."""
    path = Path(path)
    if not path.exists():
        return []
    text = _decode(path)
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # the last row was cut off: not trusted
    try:
        rows = list(csv.DictReader(lines))
    except csv.Error:
        return []
    return [r for r in rows if None not in r and None not in r.values() and r.get("cell_id")]


def format_rows(rows: list[dict]) -> str:
    clean = [{k: ("" if v is None else v) for k, v in r.items() if k not in SKIP} for r in rows]
    extra = sorted({k for r in clean for k in r} - set(COLUMNS))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS + extra, restval="")
    writer.writeheader()
    writer.writerows(clean)
    return buf.getvalue()


def write_rows(path: Path, rows: list[dict]) -> bool:
    """Replace the table by `rows` (in this order), atomically; returns whether the file changed.
    Only the study's driver writes it, under the study directory's lock (lab.study.lock)."""
    path = Path(path)
    text = format_rows(rows)
    try:
        if path.read_bytes() == text.encode("utf-8"):
            return False
    except OSError:
        pass
    write_text_atomic(path, text)
    return True


def overhead_share(rows: list[dict]) -> float | None:
    """The share of the study's time spent outside training steps: sum(overhead_s) / sum(cell_wall_s)
    over the rows that have both (`lab.training.timing`); None when none has."""
    over = wall = 0.0
    for row in rows:
        try:
            o, w = float(row.get("overhead_s") or "nan"), float(row.get("cell_wall_s") or "nan")
        except (TypeError, ValueError):
            continue
        if math.isfinite(o) and math.isfinite(w):
            over, wall = over + o, wall + w
    return over / wall if wall > 0 else None


def study_fields(study: Study, cell: Cell) -> dict:
    """The study's own fields of a cell's result (and row)."""
    return {
        "study": study.name,
        "cell_id": cell.cell_id,
        "variant": cell.variant,
        "budget_flops": cell.budget_flops,
        "branch_of": cell.branch_of,
    }


def cell_row(study: Study, cell: Cell, result: dict) -> dict:
    return {**result, **study_fields(study, cell)}


def _loss(row: dict) -> float | None:
    """The completed row's final validation loss, or None."""
    try:
        loss = float(row.get("final_val_loss"))
    except (TypeError, ValueError):
        return None
    return loss if row.get("status") == "completed" and math.isfinite(loss) else None


def with_tuning_gaps(rows: list[dict], groups: dict[str, str]) -> list[dict]:
    """`rows` with `tuning_gap` on every row of an LR axis (`groups`: cell id -> its LR group, the
    cell at its other rates): its final_val_loss minus the lowest of its group's completed rows,
    0 for the best; measured only where the group has two completed rates (else left empty)."""
    losses: dict[str, list[float]] = {}
    for r in rows:
        if r["cell_id"] in groups and _loss(r) is not None:
            losses.setdefault(groups[r["cell_id"]], []).append(_loss(r))
    out = []
    for r in rows:
        group = losses.get(groups.get(r["cell_id"], ""), [])
        if r["cell_id"] in groups:
            gap = _loss(r) - min(group) if len(group) >= 2 and _loss(r) is not None else None
            r = {**r, "tuning_gap": gap}
        out.append(r)
    return out


class ResultsTable:
    """DIR/results.csv for a study's cells and each cell's status. Rows are rebuilt from the run
    directories (DIR/runs/CELL, the truth); the intact rows of cells the study no longer has are
    kept after the study's own. With a `tracker` ("tensorboard" or "wandb", `lab.training.trackers`), each
    row links the run's tracker log (`tracker_run`): the live one its worker wrote in the run
    directory, or, for a run that ended without one, its replay into DIR/tracker/."""

    def __init__(self, study: Study, cells: list[Cell], out: Path, tracker: str | None = None):
        self.study, self.cells, self.out, self.tracker = study, cells, Path(out), tracker
        self.path = self.out / "results.csv"
        self.status: dict[str, str] = {}  # cell_id -> its run's status
        self.rows: dict[str, dict] = {}  # cell_id -> row, for cells of this study
        self.other_rows: list[dict] = []  # intact rows of cells the study no longer has
        self.tracker_runs: dict[str, str] = {}  # cell_id -> its tracker run (lab.training.trackers)

    def run_dir(self, cell_id: str) -> RunDir:
        return RunDir(self.out / "runs" / cell_id)

    def save(self) -> None:
        rows = [self.rows[c.cell_id] for c in self.cells if c.cell_id in self.rows]
        rows = with_tuning_gaps(rows, {c.cell_id: c.lr_group for c in self.cells if c.lr_group}) + self.other_rows
        if rows or self.path.exists():
            write_rows(self.path, rows)

    def collect(self) -> list[Cell]:
        """Rebuild every row from its run directory; return the cells still to run."""
        ids = {c.cell_id for c in self.cells}
        self.other_rows = [r for r in read_rows(self.path) if r["cell_id"] not in ids]
        todo = []
        for cell in self.cells:
            result = self.run_dir(cell.cell_id).read_result()
            if result and result.get("config_hash") not in (None, cell.config.hash()):
                raise ConfigError(
                    f"{self.run_dir(cell.cell_id).path} was trained with another config than the "
                    f"study now gives cell {cell.cell_id}; use a new --out (or remove that run "
                    "directory)"
                )
            if result:
                self.rows[cell.cell_id] = self.row(cell, result)
            if result and result["status"] in FINAL:
                self.status[cell.cell_id] = result["status"]
            else:
                todo.append(cell)
        self.save()
        return todo

    def row(self, cell: Cell, result: dict) -> dict:
        """The cell's row; with a tracker, `tracker_run` links its log (relative to DIR)."""
        row = cell_row(self.study, cell, result)
        link = self.tracker_link(cell.cell_id)
        return {**row, "tracker_run": link} if link else row

    def tracker_link(self, cell_id: str) -> str | None:
        """The cell's tracker run: its live log (RUN/tensorboard, RUN/wandb/...), else its replay."""
        if not self.tracker:
            return None
        from lab.training.trackers import live_run

        live = live_run(self.tracker, self.run_dir(cell_id).path)
        if live is not None:
            return self._relative(live)
        link = self.tracker_runs.get(cell_id)
        if link is None and self.tracker == "tensorboard" and (self.out / "tracker" / cell_id).is_dir():
            link = str(Path("tracker") / cell_id)
        return link

    def record(self, cell: Cell, result: dict) -> None:
        """A cell ended with `result`: its status, its tracker run (replayed if final and not logged
        live), its row, the file."""
        self.status[cell.cell_id] = result["status"]
        if self.tracker and result["status"] in FINAL and self.tracker_link(cell.cell_id) is None:
            self.log_to_tracker(cell)
        self.rows[cell.cell_id] = self.row(cell, result)
        self.save()

    def log_to_tracker(self, cell: Cell) -> None:
        """Replay a finished run that did not log live (its worker found it finished)."""
        from lab.training.trackers import log_run

        path = log_run(
            self.tracker, self.out / "tracker", self.study.name, cell.cell_id, self.run_dir(cell.cell_id).path
        )
        self.tracker_runs[cell.cell_id] = self._relative(Path(path))

    def _relative(self, path: Path) -> str:
        """`path` relative to DIR when it lies inside it."""
        out, full = self.out.resolve(), path.resolve()
        return str(full.relative_to(out) if full.is_relative_to(out) else path)
