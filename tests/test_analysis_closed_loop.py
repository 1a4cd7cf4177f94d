"""Analysis for the closed loop: budget columns of published exports and budgets learned from the
gaps in compute, the report's verdict on shaky science, confidence vs prediction intervals, and
the designer's proposals."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.cli import cmd_fit  # noqa: F401  (the CLI module must import cheaply)
from analysis.design import propose
from analysis.errors import AnalysisError
from analysis.reports.suite import diagnose, fit_problems
from analysis.result import FitResult
from analysis.table import bin_budgets, fit_data
from lab.cli import main

# the shared data checkout beside the repository (../shared/data relative to the repo root)
PORIAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "porian2024_isoflop_points.csv"


def _published(table: pd.DataFrame) -> pd.DataFrame:
    """A simulated IsoFLOP table as a published export names it."""
    return table.rename(columns={"params_total": "params", "budget_flops": "budget", "final_val_loss": "loss"})[
        ["params", "tokens", "budget", "loss"]
    ]


def test_a_budget_column_named_budget_is_used():
    t = _published(analysis.simulate_isoflop(budgets=(1e17, 1e18, 1e19), n_per_budget=5, seed=1))
    data = fit_data(t, need_budget=True)
    assert data.columns["budget"] == "budget" and data.columns["C"] == "budget"
    assert sorted(np.unique(data.budget)) == [1e17, 1e18, 1e19]


def test_jitter_merges_within_a_budget_but_close_budgets_stay_apart():
    rng = np.random.default_rng(0)
    budgets = np.array([1e19, 2.95e19, 3.84e19, 1e20])
    C = np.repeat(budgets, 6) * np.exp(0.02 * rng.standard_normal(24))
    labels, tol = bin_budgets(C, with_tolerance=True)
    assert len(np.unique(labels)) == 4 and 0.01 < tol < 0.05
    for b in budgets:  # each label is its own budget's geometric mean, within the jitter
        assert np.sum(np.abs(np.log(np.unique(labels) / b)) < 0.03) == 1
    exact, tol0 = bin_budgets(np.repeat(budgets, 3), with_tolerance=True)
    assert tol0 == 0 and set(exact) == set(budgets)  # an exact budget column keeps its values


def test_porian_export_renamed_fits_every_budget_without_nan(tmp_path, capsys):
    if not PORIAN.exists():
        pytest.skip(f"Porian et al. reference data not found at {PORIAN} (the ../shared/data checkout)")
    d = pd.read_csv(PORIAN)
    d = d[(d.dataset == "RefinedWeb") & (d.experiment == "Cosine decay")]
    d[["params", "tokens", "flops_budget", "loss"]].rename(columns={"flops_budget": "budget"}).to_csv(
        tmp_path / "p.csv", index=False
    )
    assert main(["fit", str(tmp_path / "p.csv"), "--method", "isoflop", "--json"]) == 0
    renamed = json.loads(capsys.readouterr().out)
    assert renamed["n_budgets_used"] == renamed["n_budgets"] == 12
    ref = analysis.fit(
        analysis.load(d, n_col="params", d_col="tokens", loss_col="loss", budget_col="flops_budget"), "isoflop"
    )
    assert renamed["a"] == pytest.approx(ref.a, abs=1e-12)
    # with C = 6ND instead (no budget column), the learned bins find the same 12 budgets
    d.assign(C=6 * d.params * d.tokens)[["params", "tokens", "C", "loss"]].to_csv(tmp_path / "c.csv", index=False)
    assert main(["fit", str(tmp_path / "c.csv"), "--method", "isoflop"]) == 0
    text = capsys.readouterr().out
    assert "12 of 12 budgets used" in text and "nan" not in text


def test_a_skipped_budget_prints_no_nan_optimum(tmp_path, capsys):
    t = analysis.simulate_isoflop(budgets=(1e17, 1e18, 1e19, 1e20), n_per_budget=5, seed=2)
    c = t.budget_flops.unique()[1]
    t = t[(t.budget_flops != c) | (t.params_total < t[t.budget_flops == c].params_total.median())]
    t.to_csv(tmp_path / "t.csv", index=False)
    assert main(["fit", str(tmp_path / "t.csv"), "--method", "isoflop"]) == 0
    text = capsys.readouterr().out
    assert "nan" not in text and f"C={c:.3g}: no optimum (2 distinct N; needs 3)" in text


def _fit(method, a, lo, hi, **extra):
    return FitResult(
        method=method,
        params={"a": a, "b": 1 - a, **extra.pop("params", {})},
        objective=0.0,
        residuals=np.zeros(3),
        data=pd.DataFrame(),
        ci={"a": {"lo": lo, "hi": hi, "level": 0.95, "n": 100}},
        extra=extra,
    )


def test_verdict_names_disagreement_and_unidentified_fits_and_trusts_the_clean_one():
    optima = pd.DataFrame(
        {"budget": [1e11, 3e11, 9e11], "n_points": [5, 5, 5], "edge": [False] * 3, "used": [True] * 3}
    )
    par = _fit("parametric", 0.33, 0.30, 0.36, params={"E": 0.09, "alpha": 0.3, "beta": 0.2}, n_inits_at_best=40)
    iso = _fit("isoflop", 0.52, 0.41, 0.64, optima=optima, n_budgets_used=3)
    env = _fit("envelope", 0.12, -0.05, 0.4)
    data = fit_data(
        pd.DataFrame({"N": [1e4, 2e4, 4e4], "D": [1e6] * 3, "loss": [1.5, 1.4, 1.32]}),
        n_col="N",
        d_col="D",
        loss_col="loss",
    )
    v = diagnose({"parametric": par, "isoflop": iso, "envelope": env}, data)
    text = "\n".join(v["problems"])
    assert "E = 0.09 sits near its bound 0" in text
    assert "envelope: the 95% CI of a [-0.05, 0.4] includes 0" in text
    assert "parametric and isoflop disagree beyond their intervals" in text
    assert v["trusted"] == "isoflop" and "passes every check" in v["why"]
    edge = optima.assign(edge=[False, False, True], used=[True, True, False])
    assert any(
        "edge of the size grid at 1 budget" in p
        for p in fit_problems(_fit("isoflop", 0.5, 0.4, 0.6, optima=edge, n_budgets_used=2))
    )


@pytest.fixture(scope="module")
def sim_study(tmp_path_factory):
    t = analysis.simulate_isoflop(budgets=(1e17, 3e17, 1e18, 3e18, 1e19), n_per_budget=7, noise=0.005, seed=1)
    return analysis.write_study(tmp_path_factory.mktemp("sim"), t)


def test_report_opens_with_the_verdict_and_separates_the_intervals(sim_study):
    from analysis.options import FitOptions

    runs = [
        {"cell_id": "v1", "n": 1e9, "d": 2e10, "predicted": 2.50, "measured": 2.55, "rel_error": 2.50 / 2.55 - 1},
        {"cell_id": "v2", "n": 2e9, "d": 1e10, "predicted": 2.52, "measured": None, "rel_error": None},
    ]
    (sim_study / "validation.json").write_text(
        json.dumps(
            {
                "flops": 3e19,
                "factor": 3,
                "law": "parametric",
                "n_opt_predicted": 1.1e9,
                "runs": runs,
                "summary": "S.",
            }
        )
    )
    path = analysis.report(sim_study, options=FitOptions(bootstrap=30), methods=("parametric", "isoflop"))
    text = path.read_text()
    assert "## Validation rung" in text and "| v1 | 1e+09 | 2e+10 | 2.5 | – | 2.55 | -1.96% | – |" in text
    assert "| v2 | 2e+09 | 1e+10 | 2.52 | – | – | – | – |" in text  # an old file: no interval, no inside
    assert text.index("## Verdict") < text.index("## Data") < text.index("## Intervals")
    assert "**Trusted estimate:** parametric" in text
    fits = json.loads((sim_study / "fits.json").read_text())
    p = fits["prediction"]
    assert p["flops"] == pytest.approx(1e20)  # 10x the largest compute by default
    assert p["pi_lo"] < p["ci_lo"] < p["loss"] < p["ci_hi"] < p["pi_hi"]  # a new run scatters more than the law
    truth = analysis.CHINCHILLA_EPOCH.optimal_loss(1e20)
    assert p["pi_lo"] < truth < p["pi_hi"]
    assert "Back-test** (parametric)" in text and fits["verdict"]["trusted"] == "parametric"


@pytest.fixture(scope="module")
def start_grid():
    """Budgets 1e17, 3e17, 1e18, five sizes a factor 2 apart around each true optimum, 1% noise."""
    return analysis.simulate_isoflop(budgets=(1e17, 3e17, 1e18), n_per_budget=5, noise=0.01, seed=0, span=4)


def test_design_stays_within_the_allowance_and_expects_a_narrower_interval(start_grid):
    p = propose(analysis.load(start_grid), 2e18, bootstrap=20, simulations=16)
    assert p["cells"] and p["flops_proposed"] <= 2e18 and p["estimator"] == "vpnls"
    for c in p["cells"]:
        assert c["budget"] >= 1e17 and c["d"] == pytest.approx(c["budget"] / (6 * c["n"]))
    assert sum(b["runs"] for b in p["budgets"]) == len(p["cells"])
    assert p["expected_std_after"] < p["expected_std_now"]
    assert p["ci_after"]["hi"] - p["ci_after"]["lo"] < p["ci_now"]["hi"] - p["ci_now"]["lo"]
    with pytest.raises(AnalysisError, match="below the cheapest useful addition"):
        propose(analysis.load(start_grid), 1e16, bootstrap=20)


def _drawn(cells, seed):
    """Results rows for (budget, N) cells drawn from the Epoch law with 1% log-normal noise."""
    law, rng = analysis.CHINCHILLA_EPOCH, np.random.default_rng(seed)
    C, N = np.array([c for c, _ in cells]), np.array([n for _, n in cells])
    loss = law(N, C / (6 * N)) * np.exp(0.01 * rng.standard_normal(len(C)))
    return pd.DataFrame({"params_total": N, "tokens": C / (6 * N), "budget_flops": C, "final_val_loss": loss})


def test_a_designed_table_refits_to_a_narrower_interval_than_the_naive_extension(start_grid):
    """Real refits, not the designer's projection: the designed runs and the naive extension (the next
    budget up, 3e18, five sizes around its *true* optimum) cost the same FLOPs; both are drawn from the
    law several times with fresh noise (the start too) and refitted by vpnls with its bootstrap."""
    law, F = analysis.CHINCHILLA_EPOCH, 5 * 3e18
    p = propose(analysis.load(start_grid), F, bootstrap=20, simulations=16)
    designed = [(c["budget"], c["n"]) for c in p["cells"]]
    naive = [(3e18, law.optimal(3e18)[0] * f) for f in np.geomspace(1 / 4, 4, 5)]
    assert p["flops_proposed"] <= F == sum(c for c, _ in naive)
    widths = {"designed": [], "naive": []}
    for seed in range(4):
        start = start_grid[["params_total", "tokens", "budget_flops"]].assign(
            final_val_loss=_drawn(list(zip(start_grid.budget_flops, start_grid.params_total)), seed).final_val_loss
        )
        for name, cells in (("designed", designed), ("naive", naive)):
            table = pd.concat([start, _drawn(cells, 100 + seed)], ignore_index=True)
            ci = analysis.fit(analysis.load(table), "vpnls", bootstrap=50, seed=seed).ci["a"]
            widths[name].append(ci["hi"] - ci["lo"])
    assert np.mean(widths["designed"]) < 0.5 * np.mean(widths["naive"]), widths  # measured: 0.04 vs 0.18


def test_design_cli_bad_input_is_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["design", str(tmp_path / "empty"), "--flops", "1e18"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no such table" in err
