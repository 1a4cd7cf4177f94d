"""The study's results table: one row per run or cooldown branch, in DIR/results.csv.

The table is derived: each row is rebuilt from its run directory's result.json (the truth) every
time `lab study` runs, so a torn or edited row heals itself. Reading is strict about what it
trusts: a file whose header is not a lab study table (no `cell_id`, or not UTF-8) is refused rather
than overwritten, and a row that is short, long or the unterminated last line of a cut file is
dropped. Only the study's driver writes the table (one driver per directory: `lab.study.lock`),
replacing the whole file atomically (`lab.files`), so readers never see a torn row.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from lab.config import ConfigError
from lab.files import write_text_atomic
from lab.result import FIELDS

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
        raise ConfigError(f"{path} is not a results table written by lab study (not UTF-8 text); move it "
                          "away or use another --out (nothing was changed)") from None
    if not newline and ",".join(COLUMNS).startswith(text):
        return ""  # empty, or cut inside our own header: nothing to keep
    if "cell_id" not in next(csv.reader([text]), []):
        raise ConfigError(f"{path} is not a results table written by lab study (no cell_id column); move it "
                          "away or use another --out (nothing was changed)")
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
