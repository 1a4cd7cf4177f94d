"""benchmarks/bench_seed_subsets.py on two synthetic study directories of one design (an exact law, four
seeds): every K-seed subset analysed and its rung scored on the measured validation runs; seeds shared
by two directories refused in one line."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from analysis.laws import Chinchilla
from analysis.synthetic import isoflop_table

ROOT = Path(__file__).resolve().parents[1]
LAW = Chinchilla(E=1.0, A=8.0, B=40.0, alpha=0.35, beta=0.35)
BUDGETS = (3e11, 6e11, 1.2e12, 2.4e12)
NOISE = 0.0065  # bench_form_error.py's simulated tables


def bench():
    path = ROOT / "benchmarks" / "bench_seed_subsets.py"
    spec = importlib.util.spec_from_file_location("bench_seed_subsets", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its worker processes find subset_record by name
    spec.loader.exec_module(mod)
    return mod


def study_dirs(tmp_path, seed_sets):
    """One directory per seed set: its rows of a 4-replicate exact-law grid, and a validation.json with
    two measured runs at 3x the largest budget (N_opt and 2 N_opt, their own noise)."""
    table = isoflop_table(LAW, BUDGETS, n_per_budget=5, span=4.0, noise=NOISE, seed=7, replicates=4)
    rng = np.random.default_rng(11)
    flops = 3 * BUDGETS[-1]
    dirs = []
    for i, seeds in enumerate(seed_sets):
        d = tmp_path / f"study{i}"
        d.mkdir()
        table[table.seed.isin(seeds)].to_csv(d / "results.csv", index=False)
        n_opt, _ = LAW.optimal(flops, 6.0)
        runs = []
        for j, n in enumerate((n_opt, 2 * n_opt)):
            dd = flops / (6.0 * n)
            loss = float(LAW(n, dd) * np.exp(NOISE * rng.standard_normal()))
            runs.append({"cell_id": f"v{i}{j}", "n": n, "d": dd, "measured": loss, "predicted": 0.0})
        (d / "validation.json").write_text(json.dumps({"flops": flops, "runs": runs}))
        dirs.append(d)
    return dirs


@pytest.mark.slow
def test_every_subset_is_analysed_and_scored(tmp_path):
    dirs = study_dirs(tmp_path, [(0, 1), (2, 3)])
    out = tmp_path / "subsets.json"
    bench().main(["--study", *map(str, dirs), "--k", "3", "--out", str(out), "--bootstrap", "40", "--audit", "0"])
    result = json.loads(out.read_text())
    seeds = sorted(tuple(r["seeds"]) for r in result["subsets"])
    assert seeds == [(0, 1, 2), (0, 1, 3), (0, 2, 3), (1, 2, 3)]
    assert result["flops"] == 3 * BUDGETS[-1] and len(result["validation_runs"]) == 4
    s = result["summary"]["3"]
    assert s["subsets"] == 4 and s["runs"] == 16
    assert s["runs_inside"] >= 13  # an exact law and its own noise: the PIs hold the runs
    for r in result["subsets"]:
        inside = sum(lo <= e <= hi for (lo, hi), e in zip(r["pi_rel"], r["rel_error"]))
        assert r["inside"] == inside and r["edge"] == pytest.approx(max(max(-lo, hi) for lo, hi in r["pi_rel"]))
        assert 0.01 < r["edge"] < 0.15  # at least the run noise (1.96 x 0.65%), and bounded
        assert r["trusted"] == "parametric" and r["a_lo"] < r["a"] < r["a_hi"]
        assert abs(r["a"] - 0.5) < 0.1  # alpha = beta: a = 0.5
        assert np.max(np.abs(r["rel_error"])) < 0.05
    assert s["pi_within_target"] == sum(r["edge"] <= 0.05 for r in result["subsets"])


def test_seeds_in_two_directories_are_refused(tmp_path):
    dirs = study_dirs(tmp_path, [(0, 1), (1, 2)])
    with pytest.raises(SystemExit, match="seed 1 is in .*study0 and in .*study1"):
        bench().main(["--study", *map(str, dirs), "--k", "2", "--out", str(tmp_path / "x.json")])
