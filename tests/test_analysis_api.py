"""The analysis package as a plain library: a study analysed from Python in a few lines, with
results equal to the command line's."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
import analysis.solvers.jaxcache
from analysis.__main__ import main


@pytest.fixture(autouse=True)
def _no_persistent_cache(monkeypatch):
    monkeypatch.setattr(analysis.solvers.jaxcache, "enable_persistent_cache", lambda *a, **k: None)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    design = analysis.simulate_isoflop(budgets=(1e17, 3e17, 1e18, 3e18, 1e19), n_per_budget=7, noise=0.002, seed=4)
    return analysis.write_study(tmp_path_factory.mktemp("api") / "x", design, n_log=12, seed=4)


def test_whole_study_in_a_few_lines(study_dir, tmp_path):
    t = analysis.load(study_dir)
    f = analysis.fit(t, "isoflop", bootstrap=200)
    p = analysis.fit(t, "parametric")
    written = analysis.figures(t, [f, p], tmp_path / "out")
    report = analysis.report(study_dir)

    # the simulated law (Epoch's fit, a = beta / (alpha + beta) = 0.514) is recovered, inside its CI
    assert f.a == pytest.approx(analysis.CHINCHILLA_EPOCH.a, abs=0.03)
    assert f.ci["a"]["lo"] < f.a < f.ci["a"]["hi"] and f.ci["a"]["n"] == 200
    assert p.params["alpha"] == pytest.approx(0.3473, abs=0.05)
    # figures drawn from exactly these fits: (c)'s line is the isoflop power law, (d)'s frontier the parametric law
    names = {Path(w).name for w in written}
    assert {"b_isoflop.png", "c_optimal.csv", "d_isoloss.csv", "e_residuals.csv"} <= names
    c = pd.read_csv(tmp_path / "out" / "c_optimal.csv")
    line = c[c.series == "N_opt fit"]
    np.testing.assert_allclose(line["value"], f.params["n_coef"] * line["C"] ** f.a, rtol=1e-12)
    d = pd.read_csv(tmp_path / "out" / "d_isoloss.csv")
    fr = d[d.series == "frontier"]
    np.testing.assert_allclose(fr["N"], p.law.optimal(fr["C"].to_numpy(), t.data.k)[0], rtol=1e-12)
    # the report is where `lab report` puts it, with the same isoflop exponent
    assert report == study_dir / "report.md"
    fits = json.loads((study_dir / "fits.json").read_text())
    assert fits["isoflop"]["a"] == pytest.approx(f.a, rel=1e-12)
    assert "## IsoFLOP optima" in report.read_text()


def test_library_fit_equals_the_command_line(study_dir, capsys):
    r = analysis.fit(analysis.load(study_dir, status="any"), "isoflop", bootstrap=50, seed=3, target_flops=1e21)
    assert (
        main(
            [
                "fit",
                str(study_dir),
                "--method",
                "isoflop",
                "--status",
                "any",
                "--bootstrap",
                "50",
                "--seed",
                "3",
                "--target-flops",
                "1e21",
                "--json",
            ]
        )
        == 0
    )
    cli = json.loads(capsys.readouterr().out)
    assert cli["a"] == r.a and cli["b"] == r.b
    assert cli["ci"]["a"] == pytest.approx(r.ci["a"], rel=1e-15)
    assert cli["target"]["n_opt"] == r.extra["target"]["n_opt"]


def test_options_objects_and_keywords_agree(study_dir):
    by_kw = analysis.load(study_dir, where="params_total > 2e7")
    by_opts = analysis.load(study_dir, analysis.TableOptions(where="params_total > 2e7"))
    assert len(by_kw) == len(by_opts) < len(analysis.load(study_dir))
    np.testing.assert_array_equal(by_kw.data.N, by_opts.data.N)
    a = analysis.fit(by_kw, "isoflop", estimator="quadratic")
    b = analysis.fit_with_options(by_opts, "isoflop", analysis.FitOptions(iso_method="quadratic"))
    assert a.a == b.a and a.extra["estimator"] == "quadratic"


def test_registry_is_the_one_list_of_methods():
    from analysis import cli_parsers as cli
    from analysis import methods

    assert analysis.METHODS[:4] == (
        "parametric",
        "isoflop",
        "envelope",
        "kaplan",
    )  # Chinchilla's three + Kaplan first
    assert "task" in analysis.METHODS
    assert methods.for_figures("b") == ("isoflop",) and methods.for_figures("de") == ("parametric",)
    assert methods.with_hook("holdout") == ("parametric", "isoflop", "kaplan", "vpnls")
    assert methods.with_hook("allocation_points") == ("isoflop", "envelope")  # figure (c), in preference order
    assert cli.METHODS is methods.METHODS
    with pytest.raises(analysis.AnalysisError, match="unknown method 'chinchilla'; choose from parametric"):
        analysis.fit(analysis.load(analysis.simulate_isoflop()), "chinchilla")


def test_every_law_is_one_module_whose_hooks_the_registry_finds_by_name():
    import importlib
    import subprocess
    import sys

    from analysis import methods

    for law, name in zip(methods.LAWS, methods.METHODS):
        module = importlib.import_module(f"analysis.fits.{law}")
        assert module.NAME == name and callable(module.fit) and module.DESCRIPTION
        m = methods.get(name)
        assert m.fit is module.fit and m.resample is getattr(module, "resample", None)
    # each figure letter belongs to one law; the laws' own figures are drawn by their `figure` hook
    letters = [c for n in methods.METHODS for c in methods.get(n).figures]
    assert sorted(set("".join(letters))) == sorted("abcde" + "".join(methods.own_figures()))
    assert {k: v[0] for k, v in methods.own_figures().items()} == {
        "r": "data-constrained",
        "i": "task",
        "q": "ptq",
        "l": "lr",
    }
    # the registry and every law's metadata load without JAX, scipy or matplotlib
    code = (
        "import sys, analysis.methods as m; [m.get(n) for n in m.METHODS]; "
        "print(sorted({'jax', 'scipy', 'matplotlib'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_exported_names_stay_functions_after_their_modules_load():
    import analysis.fitting
    import analysis.reports.reporting
    import analysis.uncertainty.holdout
    import analysis.uncertainty.intervals

    for name in ("fit", "bootstrap", "backtest", "report", "figures", "load"):
        assert callable(getattr(analysis, name)) and not isinstance(getattr(analysis, name), type(analysis)), name


def test_figure_a_is_drawn_without_an_envelope_fit(study_dir, tmp_path):
    """When no envelope fit is given (or it was refused), figure (a) still shows every run."""
    import pandas as pd

    study = analysis.load(study_dir)
    paths = analysis.figures(study, [], tmp_path, "a", formats=("png",))
    csv = pd.read_csv(tmp_path / "a_envelope.csv")
    assert any(p.endswith("a_envelope.png") for p in paths)
    assert set(csv["series"]) == {"run"} and csv["run_id"].nunique() == len(study.data.N)
