"""Why does vpnls's row-bootstrap interval of a over-cover on a small IsoFLOP design? Interval schemes
side by side on copies of TABLE's design drawn from its own vpnls law (benchmarks/README.md,
"Calibrating the audited intervals").

Run:  python benchmarks/bench_interval_schemes.py TABLE [COPIES]     (60 copies: ~90 s CPU for 20 rows)

Per copy (100 resamples each): the Huber fit's row bootstrap (the lab's), the least-squares fit's
(delta = 1), rows resampled within each budget, a residual bootstrap (the fitted law times
exp(sigma_hat z)) of the Huber and least-squares fits, and the row bootstrap's basic interval.
"""

import sys
import time

import numpy as np

from analysis.fits.vpnls import LSE_NAMES, fit_vpnls
from analysis.inputs import load
from analysis.laws import Chinchilla
from analysis.solvers.varpro import huber_polish
from analysis.synthetic import noise_of, simulate_like
from analysis.table import resample_counts
from analysis.uncertainty.audit import truth_of

M = int(sys.argv[2]) if len(sys.argv) > 2 else 60
B = 100
data = load(sys.argv[1]).data
law, res = truth_of(data)
sigma = noise_of(data, res)["sigma"]
print(f"truth a={law.a:.4f} sigma={sigma:.4g} n={len(data)}")
rng = np.random.default_rng(1)
budgets = np.unique(data.budget)


def a_of(th):
    return th[4] / (th[3] + th[4])


def polish(th0, d, delta, w=None, L=None):
    return huber_polish(th0, d.N, d.D, d.L if L is None else L, delta, w=w)[0]


def ci(s, lvl=0.95):
    s = np.asarray(s)
    return np.percentile(s, 2.5), np.percentile(s, 97.5)


rec = {k: [] for k in ("huber", "ls")}
schemes = ("case", "case_ls", "strat", "resid", "resid_ls", "case_basic")
out = {k: [] for k in schemes}
t0 = time.time()
for _ in range(M):
    c = simulate_like(data, law, sigma, rng)
    f = fit_vpnls(c)
    th0 = np.array([f.extra["lse_params"][p] for p in LSE_NAMES])
    a_h = f.law.a
    th_ls = polish(th0, c, 1.0)  # delta=1: pure least squares in log residual
    a_ls = a_of(th_ls)
    rec["huber"].append(a_h)
    rec["ls"].append(a_ls)
    W = resample_counts(rng, c, B)
    case = [a_of(polish(th0, c, 1e-3, w=w)) for w in W]
    case_ls = [a_of(polish(th_ls, c, 1.0, w=w)) for w in W]
    # stratified: 5 rows drawn with replacement within each budget
    Ws = np.zeros((B, len(c)))
    for bdg in budgets:
        idx = np.flatnonzero(c.budget == bdg)
        Ws[:, idx] = rng.multinomial(len(idx), np.full(len(idx), 1 / len(idx)), size=B)
    strat = [a_of(polish(th0, c, 1e-3, w=w)) for w in Ws]
    # residual (parametric) bootstrap: the fitted law plus noise of the fit's residual size
    r = np.log(c.L / f.law(c.N, c.D))
    s_hat = np.sqrt(np.sum(r**2) / (len(r) - 5))
    resid = [
        a_of(polish(th0, c, 1e-3, L=f.law(c.N, c.D) * np.exp(s_hat * rng.standard_normal(len(c)))))
        for _ in range(B)
    ]
    fls = Chinchilla.from_lse(*th_ls)
    resid_ls = [
        a_of(polish(th_ls, c, 1.0, L=fls(c.N, c.D) * np.exp(s_hat * rng.standard_normal(len(c)))))
        for _ in range(B)
    ]
    for k, s, est in (
        ("case", case, a_h),
        ("case_ls", case_ls, a_ls),
        ("strat", strat, a_h),
        ("resid", resid, a_h),
        ("resid_ls", resid_ls, a_ls),
    ):
        lo, hi = ci(s)
        out[k].append((est, lo, hi, np.std(s), np.percentile(s, 84) - np.percentile(s, 16)))
    lo, hi = ci(case)
    out["case_basic"].append((a_h, 2 * a_h - hi, 2 * a_h - lo, np.std(case), 0))
print(f"{M} copies, {B} resamples, {time.time() - t0:.0f} s")
for k, v in rec.items():
    v = np.array(v)
    print(
        f"point {k:6}: bias {v.mean() - law.a:+.4f} sd {v.std():.4f} rmse {np.sqrt(np.mean((v - law.a) ** 2)):.4f}"
    )
for k in schemes:
    v = np.array(out[k])
    est, lo, hi, sd, iqr = v.T
    cov = np.mean((lo <= law.a) & (law.a <= hi))
    print(
        f"{k:10}: coverage {cov:.2f} mean width {np.mean(hi - lo):.4f} median width {np.median(hi - lo):.4f} "
        f"mean boot sd {sd.mean():.4f} median boot sd {np.median(sd):.4f} mean (p84-p16)/2 {iqr.mean() / 2:.4f}"
    )
