"""Variable projection (`analysis.solvers.varpro`, `--method vpnls`): exact NNLS, exact recovery of a
noiseless law, the Epoch refit's Huber objective, no JAX in the process."""

import json
import subprocess
import sys

import numpy as np
import pytest

import analysis
from analysis.solvers.huber_lse import huber_objective
from analysis.solvers.varpro import grams, nnls3, vp_search
from tests.conftest import SHARED_DATA
from tests.helpers.runs import REPO

EPOCH = SHARED_DATA / "chinchilla_epoch.csv"


def test_nnls3_matches_brute_force_over_supports():
    rng = np.random.default_rng(0)
    for _ in range(50):
        M = rng.standard_normal((30, 3))
        y = rng.standard_normal(30)
        G, r = M.T @ M, M.T @ y
        c, f = nnls3(G[None], r[None], float(y @ y))
        # brute force: a fine projected-gradient solve
        x = np.zeros(3)
        step = 1.0 / np.linalg.eigvalsh(G).max()
        for _ in range(20000):
            x = np.maximum(x - step * (G @ x - r), 0.0)
        assert np.all(c[0] >= 0)
        assert f[0] == pytest.approx(float(np.sum((M @ x - y) ** 2)), rel=1e-7, abs=1e-9)


def test_grams_are_the_weighted_products():
    rng = np.random.default_rng(1)
    x, z, w, y = rng.random((2, 5)), rng.random((3, 5)), rng.random(5), rng.random(5)
    G, r = grams(x, z, w, y)
    M = np.stack([np.ones(5), x[1], z[2]], 1)
    np.testing.assert_allclose(G[1, 2], M.T @ (w[:, None] * M))
    np.testing.assert_allclose(r[1, 2], M.T @ (w * y))


def test_recovers_a_noiseless_law_exactly():
    N = np.repeat(np.geomspace(1e7, 1e10, 8), 6)
    D = np.tile(np.geomspace(1e9, 1e12, 6), 8)
    L = 1.7 + 400.0 * N**-0.34 + 1800.0 * D**-0.29
    f, E, A, B, alpha, beta = vp_search(N, D, L)[0]
    assert f < 1e-9  # the projected objective is y'Wy - c'r: exact to ~1e-13 of y'Wy = 48
    assert (E, A, B, alpha, beta) == pytest.approx((1.7, 400.0, 1800.0, 0.34, 0.29), rel=1e-5)


@pytest.mark.skipif(not EPOCH.exists(), reason=f"published data not found at {EPOCH}")
def test_reaches_the_epoch_refit_objective():
    study = analysis.load(EPOCH, drop_highest_loss=5, need_budget=False)
    fit = analysis.fit(study, "vpnls")
    assert fit.objective <= 1.0183e-3  # Epoch's refit (and fit_parametric): 1.0182740e-3
    d = study.data
    assert huber_objective(fit.law.to_lse(), d.N, d.D, d.L) == pytest.approx(fit.objective, rel=1e-12)
    assert fit.params["alpha"] == pytest.approx(0.3473, abs=2e-4) and fit.params["beta"] == pytest.approx(
        0.3672, abs=2e-4
    )
    assert fit.extra["vp_objective"] > 0 and not fit.warnings


@pytest.mark.skipif(not EPOCH.exists(), reason=f"published data not found at {EPOCH}")
def test_lab_fit_vpnls_starts_no_jax():
    code = (
        "import sys, json; from lab.cli import main; "
        f"rc = main(['fit', {str(EPOCH)!r}, '--drop-highest-loss', '5', '--method', 'vpnls', '--json']); "
        "print(json.dumps({'rc': rc, 'jax': 'jax' in sys.modules, 'scipy': 'scipy' in sys.modules}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    fit, flags = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert flags == {"rc": 0, "jax": False, "scipy": False}
    assert fit["method"] == "vpnls" and fit["objective"] <= 1.0183e-3
