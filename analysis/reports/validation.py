"""The report's reading of `validation.json` (`lab study --validate K`): the pre-registered
prediction of runs trained beyond the grid, each with its prediction interval, against what they
measured. The verdict opens with a loud line when a run fell outside its interval."""

from __future__ import annotations

import json
from pathlib import Path

from .text import md


def read_validation(source: Path, suite: dict | None = None) -> dict | None:
    """validation.json beside the table, or None; with `suite`, "fit_changed" says whether the
    method it predicted with now fits the table differently (its hash differs)."""
    path = (source if source.is_dir() else source.parent) / "validation.json"
    if not path.exists():
        return None
    try:
        v = json.loads(path.read_text())
        if not isinstance(v.get("runs"), list) or "flops" not in v:
            raise KeyError("runs and flops")
    except (ValueError, KeyError, AttributeError) as e:
        from ..errors import AnalysisError

        raise AnalysisError(
            f"{path} is damaged ({type(e).__name__}: {e}); move it away or re-run `lab study ... --validate K`"
        ) from None
    method, registered = v.get("method", v.get("law")), v.get("fit_sha256")
    if suite is not None and registered and suite.get(method) is not None:
        from ..uncertainty.predict import fit_sha256

        try:
            v["fit_changed"] = fit_sha256(suite[method]) != registered
        except Exception:  # a fit that cannot be hashed the same way: say nothing rather than guess
            v["fit_changed"] = None
    return v


def outside(v: dict) -> list[dict]:
    """The measured runs that fell outside their prediction interval."""
    return [r for r in v.get("runs", []) if r.get("inside_pi") is False]


def validation_verdict(v: dict) -> dict:
    """What fits.json's verdict records of the validation: method, runs measured, inside, outside."""
    measured = [r for r in v.get("runs", []) if r.get("measured") is not None]
    return {
        "method": v.get("method", v.get("law")),
        "flops": v.get("flops"),
        "measured": len(measured),
        "inside_pi": sum(r.get("inside_pi") is True for r in measured),
        "outside_pi": [r["cell_id"] for r in outside(v)],
        "mean_abs_rel_error": v.get("mean_abs_rel_error"),
    }


def verdict_lines(v: dict | None) -> list[str]:
    """The verdict's first lines: loud when a validation run fell outside its interval."""
    if not v:
        return []
    s = validation_verdict(v)
    level = v.get("level", 0.95)
    where = f"at C = {s['flops']:.3g} FLOPs ({s['method']} law)"
    if s["outside_pi"]:
        return [
            f"**VALIDATION FAILED: {len(s['outside_pi'])} of {s['measured']} validation run(s) {where} fell "
            f"outside their {level:.0%} prediction interval ({', '.join(s['outside_pi'])}). The law does not "
            "predict beyond the grid as well as it claims; read every estimate below with that in mind.**",
            "",
        ]
    if s["measured"] and any("inside_pi" in r for r in v["runs"]):
        return [
            f"**Validation passed:** all {s['measured']} validation run(s) {where} fell inside their "
            f"{level:.0%} prediction interval (mean |relative error| {s['mean_abs_rel_error']:.2%}).",
            "",
        ]
    return []


def sign_lines(v: dict) -> list[str]:
    """Which way the law erred beyond the grid: in its back-tests (before the runs) and on the runs. The
    interval counts a consistent sign as spread about the prediction, not as a shift; the reader should see
    it (on the default CPU study every validation run came in below its prediction, as the back-tests did)."""
    signs, b = v.get("form_signs") or {}, v.get("form_bias_per_log") or 0.0
    n = signs.get("over", 0) + signs.get("under", 0)
    done = [r["rel_error"] for r in v["runs"] if r.get("rel_error") is not None]
    L = []
    if n:
        x = (v.get("noise") or {}).get("form_distance") or 0.0
        L.append(
            f"In its back-tests the law predicted above the measured loss for {signs['over']} of {n} held-out "
            f"runs (a drift of {b:+.3g} in log loss per unit log distance, {b * x:+.1%} at this rung's); the "
            "interval holds that as spread, not as a shift."
        )
    if done:
        L.append(f"The validation runs: {sum(e > 0 for e in done)} of {len(done)} came in below their prediction.")
    return [" ".join(L), ""] if L else []


def validation_section(v: dict | None) -> list[str]:
    """`lab study --validate K`: the prediction at K x the largest budget against runs trained there."""
    if not v:
        return []
    trusted = v.get("trusted", v.get("law"))
    pre = v.get("predicted_at")
    L = [
        "## Validation rung",
        "",
        f"Trained after the fit at C = {v['flops']:.3g} FLOPs ({v['factor']:g}× the largest budget), "
        f"the predicted compute-optimal size N_opt = {v['n_opt_predicted']:.3g} ({v.get('method', v['law'])}"
        + ("" if trusted == v.get("method", v["law"]) else f"; the verdict trusted {trusted or 'no method'}")
        + ") and a size on each side"
        + (
            f"; the prediction was written at {pre} before they trained (fit sha256 {v['fit_sha256'][:12]}…)"
            if pre
            else ""
        )
        + ":",
        "",
    ]
    if v.get("how"):
        L += (
            [f"Predicted by {v['how']}; interval: {v['pi_note']}.", ""]
            if v.get("pi_note")
            else [f"Predicted by {v['how']}.", ""]
        )
    form = (v.get("noise") or {}).get("form_source")
    if form:
        L += [f"The law's form error in the interval, measured before the runs: {form}.", ""]
    L += sign_lines(v)
    L += [
        "| cell | N | D | predicted loss | prediction interval | measured loss | error | inside |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in v["runs"]:
        pi = f"[{r['pi_lo']:.4g}, {r['pi_hi']:.4g}]" if r.get("pi_lo") is not None else "–"
        inside = {True: "yes", False: "**no**"}.get(r.get("inside_pi"), "–")
        L.append(
            f"| {r['cell_id']} | {r['n']:.3g} | {r['d']:.3g} | {md(r['predicted'], '.4g')} | {pi} | "
            f"{md(r.get('measured'), '.4g')} | {md(r.get('rel_error'), '+.2%')} | {inside} |"
        )
    L += ["", v["summary"], ""]
    if v.get("fit_changed"):
        L += [
            f"The {v.get('method', v['law'])} fit of this table has changed since the prediction was written "
            "(its hash differs): the prediction above stands as registered, not as today's fit would make it.",
            "",
        ]
    return L
