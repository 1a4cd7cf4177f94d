"""One vocabulary across the `lab` commands: the same positional names, `--json` as one JSON object
on stdout, `--quiet` wherever progress is printed, `--flops` and `--mesh` on `study`, the table
flags on `design`, and every default shown by `--help`. (`lab bench --json`: tests/test_bench.py.)"""

import argparse
import json
import textwrap

import pytest

import analysis
from lab.cli import build_parser, main
from lab.cli.study import study_overrides

STUDY = """
from lab.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from lab.study import Study
BASE = RunConfig(model=ModelConfig(seq_len=32), data=DataConfig(val_tokens=1024),
                 train=TrainConfig(batch_size=4, lr=3e-3, log_every=5, eval_every=0))

def study():
    return Study(name="two", base=BASE, sizes=[{"d_model": 16}, {"d_model": 32}], budgets=[2e9], min_steps=5)
"""


def _commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _positionals(p) -> list[str]:
    return [a.metavar for a in p._actions if not a.option_strings]


def test_positional_names_are_one_per_kind():
    cmds = _commands()
    for name in ("fit", "plot", "design", "report"):
        assert _positionals(cmds[name]) == ["TABLE"], name
        assert [a.dest for a in cmds[name]._actions if not a.option_strings] == ["table"], name
    for name in ("sample", "eval"):
        assert _positionals(cmds[name]) == ["RUN_DIR"], name
    assert _positionals(cmds["study"]) == ["STUDY_FILE"]


def test_quiet_and_json_where_they_belong():
    cmds = _commands()
    flags = {name: {s for a in p._actions for s in a.option_strings} for name, p in cmds.items()}
    for name in ("train", "study", "bench", "fit", "plot", "design", "report"):  # the commands that print progress
        assert "--quiet" in flags[name], name
    for name in ("bench", "eval", "fit", "design"):  # --json is a flag (no value) everywhere
        (action,) = [a for a in cmds[name]._actions if "--json" in a.option_strings]
        assert action.nargs == 0 and action.default is False, name
    assert "--mesh" in flags["study"] and "--mesh" in flags["train"] and "--mesh" in flags["bench"]
    assert "--flops" in flags["study"] and "--flops" in flags["design"]
    table = {
        "--n-col",
        "--d-col",
        "--c-col",
        "--loss-col",
        "--budget-col",
        "--where",
        "--status",
        "--k",
        "--drop-highest-loss",
        "--curve-points",
    }
    for name in ("fit", "plot", "design", "report"):
        assert table <= flags[name], name


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_shows_every_default(name):
    p = _commands()[name]
    formatter = p._get_formatter()
    for a in p._actions:
        if not a.option_strings or a.help is argparse.SUPPRESS:
            continue
        if a.default is None or a.default is False or a.default == [] or a.default is argparse.SUPPRESS:
            continue  # "not set": nothing to show
        assert "default" in formatter._get_help_string(a), (name, a.option_strings)
    text = p.format_help()
    if name in ("fit", "plot", "report", "design"):
        bootstrap = "0" if name == "fit" else "200"
        assert f"(default: {bootstrap})" in " ".join(text.split()[text.split().index("--bootstrap") :][:12]), text


def test_bootstrap_defaults_unchanged():
    cmds = _commands()
    assert cmds["fit"].parse_args(["t.csv"]).bootstrap == 0
    for name, extra in (("plot", ["--out", "o"]), ("report", []), ("design", ["--flops", "1e18"])):
        assert cmds[name].parse_args(["t.csv", *extra]).bootstrap == 200, name


def _write_study(tmp_path):
    path = tmp_path / "study.py"
    path.write_text(textwrap.dedent(STUDY))
    return path


def test_study_flops_is_the_adaptive_allowance(tmp_path, capsys):
    path = _write_study(tmp_path)
    args = build_parser().parse_args(["study", str(path), "--adaptive", "--flops", "1e12"])
    assert args.flops == 1e12 and args.adaptive
    assert main(["study", str(path), "--dry-run", "--no-timing", "--adaptive", "--flops", "1e12"]) == 0
    assert "note" not in capsys.readouterr().err


def test_study_flops_total_still_works_with_a_note(tmp_path, capsys):
    path = _write_study(tmp_path)
    args = build_parser().parse_args(["study", str(path), "--adaptive", "--flops-total", "2e12"])
    assert args.flops == 2e12
    assert "--flops-total is deprecated; use --flops" in capsys.readouterr().err
    assert "--flops-total" not in _commands()["study"].format_help()  # hidden from --help


def test_study_mesh_is_set_mesh(tmp_path, capsys):
    from lab.study.load import load_study
    from lab.study.spec import expand

    path = _write_study(tmp_path)
    parse = lambda *extra: build_parser().parse_args(["study", str(path), *extra])
    a, b = parse("--mesh", "data=1"), parse("--set", "mesh=data=1")
    assert study_overrides(a) == study_overrides(b) == ["mesh=data=1"]
    cells = expand(load_study(str(path)), 256, study_overrides(a))
    assert cells and all(c.config.mesh == "data=1" for c in cells)
    errors = []
    for flags in (["--mesh", "data=3"], ["--set", "mesh=data=3"]):
        assert main(["study", str(path), "--dry-run", "--no-timing", *flags]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "mesh 'data=3' needs 3 devices" in err, err
        errors.append(err)
    assert errors[0] == errors[1]


@pytest.fixture(scope="module")
def iso_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("design") / "iso.csv"
    t = analysis.simulate_isoflop(budgets=(1e17, 3e17, 1e18), n_per_budget=5, noise=0.01, seed=1, span=4)
    t.rename(columns={"params_total": "size"}).drop(columns=["params_non_embedding"]).to_csv(path, index=False)
    return path


def _design(capsys, *argv) -> dict:
    assert main(["design", *map(str, argv), "--flops", "2e18", "--bootstrap", "50", "--json", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1  # one JSON object, nothing else on stdout
    return json.loads(out)


def test_design_applies_the_table_flags(capsys, iso_csv):
    assert main(["design", str(iso_csv), "--flops", "2e18"]) == 2  # no N column without --n-col
    assert "no N (--n-col) column found" in capsys.readouterr().err
    every = _design(capsys, iso_csv, "--n-col", "size")
    fewer = _design(capsys, iso_csv, "--n-col", "size", "--where", "budget_flops < 5e17")
    assert every["cells"] and fewer["cells"] and every != fewer
    width = lambda p: p["ci_now"]["hi"] - p["ci_now"]["lo"]
    assert width(fewer) > 2 * width(every)  # the fit it starts from saw two budgets, not three
    assert all(b["budget"] < 5e17 for b in fewer["budgets"] if b["kind"] == "more sizes")  # only kept budgets
    assert main(["design", str(iso_csv), "--flops", "2e18", "--n-col", "size", "--status", "failed"]) == 2
    assert "lab design: error:" in capsys.readouterr().err  # --status applies: no failed rows to fit


@pytest.mark.parametrize("flag, value", [("--by", "seed"), ("--curve-loss", "val_loss"), ("--smooth", "3")])
def test_design_refuses_table_flags_that_cannot_apply(capsys, iso_csv, flag, value):
    assert main(["design", str(iso_csv), "--flops", "2e18", "--n-col", "size", flag, value]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"lab design: error: {flag} does not apply to design"), err


def test_quiet_silences_the_analysis_progress_lines(capsys):
    from analysis.cli import _progress, _quietly

    progress = _progress()

    def handler(args):
        progress.Progress("fit", True)("working")
        return 0

    for quiet, expected in ((False, "fit: working"), (True, "")):
        assert _quietly(handler)(argparse.Namespace(quiet=quiet)) == 0
        assert (expected in capsys.readouterr().err) if expected else capsys.readouterr().err == ""
    assert progress.QUIET is False  # restored after the command
