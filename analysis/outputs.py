"""Where the analysis may write: only where the lab wrote before, or into a new or empty place.

The rule of run directories (`lab train --out`), kept without importing the lab: every directory
the analysis writes into (a report's folder, its figures/, `lab plot --out DIR`) holds a manifest,
DIR/.lab-outputs, naming the entries the lab wrote there. A file that exists is overwritten only
when the manifest names it; a folder the figures go to must be new, empty, or hold nothing but
entries its manifest names. Anything else is refused in one line (AnalysisError) before anything
is fitted or written: the lab never overwrites a file it did not write.

A study directory (one holding study.json: what `lab study` writes, analysed by
`lab.study.analyze`) counts its report.md, fits.json and figures/ as the lab's, so studies
reported before manifests existed are reported again in place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import AnalysisError

MANIFEST = ".lab-outputs"
STUDY_PLAN = "study.json"
STUDY_OUTPUTS = frozenset({"report.md", "fits.json", "figures"})  # what `lab study`'s analysis writes


def _manifest(directory: Path) -> set[str]:
    """The names DIR/.lab-outputs says the lab wrote (none when it is absent or unreadable)."""
    try:
        data = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return set()
    names = data.get("written") if isinstance(data, dict) else None
    return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()


def _in_study(directory: Path) -> bool:
    return (directory / STUDY_PLAN).is_file()


def owned(directory) -> set[str]:
    """Names in `directory` the lab wrote: its manifest's, a study directory's report files, and
    everything in a study directory's figures/."""
    directory = Path(directory)
    names = _manifest(directory)
    if _in_study(directory):
        names |= STUDY_OUTPUTS
    if directory.name == "figures" and _in_study(directory.parent) and directory.is_dir():
        names |= {p.name for p in directory.iterdir()}
    return names


def _foreign(directory: Path, names) -> list[str]:
    own = owned(directory)
    return sorted(n for n in names if n not in own and ((directory / n).exists() or (directory / n).is_symlink()))


def _short(names: list[str], most: int = 3) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def check_files(directory, names) -> None:
    """Each of `names` in `directory` is new or the lab's own."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise AnalysisError(f"{directory} exists and is not a folder; write elsewhere (nothing was written)")
    if not directory.is_dir():
        return
    foreign = _foreign(directory, names)
    if foreign:
        raise AnalysisError(
            f"{directory / foreign[0]} exists and the lab did not write it; the lab overwrites only its "
            "own files: choose a new --out, or move it away (nothing was written)"
        )


def check_folder(directory) -> None:
    """`directory` is new, empty, or holds only entries the lab wrote."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise AnalysisError(f"{directory} exists and is not a folder; write elsewhere (nothing was written)")
    if not directory.is_dir():
        return
    foreign = _foreign(directory, [p.name for p in directory.iterdir() if not _bookkeeping(p.name)])
    if foreign:
        raise AnalysisError(
            f"{directory} holds files the lab did not write ({_short(foreign)}); write into a new or empty "
            "folder, or one the lab wrote (nothing was written)"
        )


def report_path(source, out=None) -> Path:
    """Where a report of `source` goes (`out`, else report.md in the study directory or beside the
    CSV), checked by `check_report`."""
    source = Path(source)
    out = Path(out) if out else ((source if source.is_dir() else source.parent) / "report.md")
    check_report(out)
    return out


def check_report(out) -> None:
    """A report at `out`: the file and fits.json beside it new or the lab's, and figures/ beside
    it a folder the lab may write into."""
    out = Path(out)
    if out.is_dir():
        raise AnalysisError(f"--out {out} is a folder; give the report's file name, e.g. {out / 'report.md'}")
    if out.name == "fits.json":
        raise AnalysisError("--out fits.json: that name is the report's fits, written beside it; choose another")
    check_files(out.parent, (out.name, "fits.json"))
    check_folder(out.parent / "figures")


def claim(directory, names) -> Path:
    """Record `names` as the lab's in `directory` (made if needed) before writing them; refuses a
    name that exists and is not the lab's. Returns the directory."""
    directory = Path(directory)
    check_files(directory, names)
    directory.mkdir(parents=True, exist_ok=True)
    known = _manifest(directory)
    if not set(names) <= known:
        tmp = directory / f"{MANIFEST}.tmp"
        tmp.write_text(json.dumps({"lab": "analysis outputs", "written": sorted(known | set(names))}, indent=1))
        os.replace(tmp, directory / MANIFEST)
    return directory


def _bookkeeping(name: str) -> bool:
    """The manifest itself and its temporary file."""
    return name in (MANIFEST, f"{MANIFEST}.tmp")
