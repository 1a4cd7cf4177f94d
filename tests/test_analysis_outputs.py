"""`lab report` and `lab plot` never overwrite a user's files (`analysis.outputs`): they write only
where the lab wrote before, or into a new or empty place, and refuse anything else in one line
(exit 2) before fitting; the lab's own outputs, a study directory's included, are rewritten."""

import json
import os

import pytest

import analysis
import analysis.solvers.jaxcache
from analysis.__main__ import main
from analysis.outputs import MANIFEST

FAST = ["--bootstrap", "0", "--quiet"]


@pytest.fixture(autouse=True)
def _no_persistent_cache(monkeypatch):
    monkeypatch.setattr(analysis.solvers.jaxcache, "enable_persistent_cache", lambda *a, **k: None)


@pytest.fixture
def user_dir(tmp_path):
    """A user's folder: their results CSV (an IsoFLOP grid) and nothing else."""
    d = tmp_path / "u"
    d.mkdir()
    analysis.simulate_isoflop(noise=0.002, seed=7).to_csv(d / "data.csv", index=False)
    return d


def _error(capsys, *argv) -> str:
    assert main([str(a) for a in argv]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1, err
    return err


def _ok(capsys, *argv) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def _snapshot(d):
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "mine",
    [
        {"report.md": b"my report\n"},
        {"fits.json": b'{"mine": 1}\n'},
        {"figures/a_envelope.png": b"my figure"},
        {"figures/holiday.jpg": b"not a figure of the lab's"},
    ],
    ids=["report", "fits", "a-figure-of-the-same-name", "another-file-in-figures"],
)
def test_report_beside_a_csv_never_overwrites_the_users_files(capsys, user_dir, mine):
    for name, data in mine.items():
        (user_dir / name).parent.mkdir(exist_ok=True)
        (user_dir / name).write_bytes(data)
    before = _snapshot(user_dir)
    err = _error(capsys, "report", user_dir / "data.csv", *FAST)
    assert "the lab did not write" in err and "nothing was written" in err, err
    assert _snapshot(user_dir) == before  # nothing overwritten, nothing added


def _report(source, out=None):
    """`lab report` as the library runs it, with one quick law."""
    return analysis.report(source, out, options=analysis.FitOptions(bootstrap=0), methods=("isoflop",))


def test_report_is_rewritten_where_the_lab_wrote_it(user_dir):
    assert _report(user_dir / "data.csv") == user_dir / "report.md"
    assert json.loads((user_dir / MANIFEST).read_text())["written"] == ["figures", "fits.json", "report.md"]
    figures = json.loads((user_dir / "figures" / MANIFEST).read_text())["written"]
    assert {"a_envelope.png", "b_isoflop.csv"} <= set(figures)
    (user_dir / "fits.json").write_text("stale")
    _report(user_dir / "data.csv")  # the lab's own files: overwritten
    assert "isoflop" in json.loads((user_dir / "fits.json").read_text())
    assert sorted(os.listdir(user_dir)) == [MANIFEST, "data.csv", "figures", "fits.json", "report.md"]


def test_report_out_over_a_users_file_is_refused(capsys, user_dir, tmp_path):
    existing = tmp_path / "existing.md"
    existing.write_text("my notes\n")
    err = _error(capsys, "report", user_dir / "data.csv", "--out", existing, *FAST)
    assert f"{existing} exists and the lab did not write it" in err
    assert existing.read_text() == "my notes\n" and not (tmp_path / "figures").exists()
    err = _error(capsys, "report", user_dir / "data.csv", "--out", tmp_path, *FAST)
    assert "is a folder; give the report's file name" in err


def test_report_out_puts_fits_and_figures_beside_the_report(user_dir, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    _report(user_dir / "data.csv", tmp_path / "rep" / "mine.md")
    assert (tmp_path / "rep" / "mine.md").exists() and (tmp_path / "rep" / "fits.json").exists()
    assert (tmp_path / "rep" / "figures" / "b_isoflop.png").exists()
    assert os.listdir(cwd) == [] and sorted(os.listdir(user_dir)) == ["data.csv"]


def test_plot_refuses_a_folder_of_the_users_figures(capsys, user_dir, tmp_path):
    figs = tmp_path / "figs"
    figs.mkdir()
    (figs / "my_plot.png").write_bytes(b"mine")
    err = _error(capsys, "plot", user_dir / "data.csv", "--out", figs, "--figures", "a", "--format", "png", *FAST)
    assert f"{figs} holds files the lab did not write (my_plot.png)" in err
    assert os.listdir(figs) == ["my_plot.png"]


def test_plot_writes_a_new_or_empty_folder_and_rewrites_its_own(capsys, user_dir, tmp_path):
    argv = ["plot", user_dir / "data.csv", "--figures", "a", "--format", "png", *FAST]
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new", tmp_path / "empty"):
        written = _ok(capsys, *argv, "--out", out).split()
        assert written == [str(out / "a_envelope.png"), str(out / "a_envelope.csv")]
        _ok(capsys, *argv, "--out", out)  # again: the lab's own files
        assert sorted(os.listdir(out)) == [MANIFEST, "a_envelope.csv", "a_envelope.png"]


def test_a_study_directory_reported_before_manifests_is_reported_again(capsys, tmp_path):
    """What `lab study` wrote (DIR/study.json) owns its report.md, fits.json and figures/, so a
    study analysed by an older lab (no manifest) is reported in place, as lab.study.analyze does."""
    study = analysis.write_study(tmp_path / "s", analysis.simulate_isoflop(noise=0.002, seed=1), n_log=8)
    (study / "study.json").write_text('{"study": "s", "cells": []}')
    (study / "report.md").write_text("old report")
    (study / "fits.json").write_text("{}")
    (study / "figures").mkdir()
    (study / "figures" / "a_envelope.png").write_bytes(b"old")
    path = _report(study)
    assert path == study / "report.md" and path.read_text().startswith("# Scaling-law report")
    assert (study / "figures" / "a_envelope.png").read_bytes() != b"old"


def test_the_python_api_never_overwrites_a_users_file(tmp_path):
    study = analysis.load(analysis.simulate_isoflop(noise=0.002, seed=7))
    fit = analysis.fit(study, "isoflop")
    (tmp_path / "a_envelope.png").write_bytes(b"mine")
    with pytest.raises(analysis.AnalysisError, match="the lab did not write it"):
        analysis.figures(study, [fit], tmp_path, "a", formats=("png",))
    assert (tmp_path / "a_envelope.png").read_bytes() == b"mine"


@pytest.mark.parametrize("cmd", ["fit", "report", "plot"])
def test_a_path_too_long_for_the_file_system_is_one_line(capsys, user_dir, cmd):
    long = "x" * 300
    if cmd == "fit":
        argv = ["fit", user_dir / f"{long}.csv"]
    else:
        argv = [cmd, user_dir / "data.csv", "--out", user_dir / long / ("r.md" if cmd == "report" else "")]
    err = _error(capsys, *argv, *FAST[2:])
    assert "path too long for the file system" in err and "use a shorter name" in err, err
    assert len(err) < 400, err  # the path is shortened in the message
