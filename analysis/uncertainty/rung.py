"""The validation rung's prediction of its runs: the law's form term measured on the table, the laws
drawn as `residual.rung_draws` says, and `predict.predict_runs` (what `lab study --validate` writes to
validation.json before its runs start)."""

from __future__ import annotations

from .form import rung_form_term
from .predict import predict_runs
from .residual import RUNG_DRAWS, prediction_draws, rung_draws


def rung_prediction(fit, shape, data, options, N, D, flops: float) -> tuple[dict, dict, str]:
    """The validation rung's predictions for runs (N, D) at compute `flops`: the law's form term from
    the table's nested back-tests (residual draws), then `predict.predict_runs` with the laws drawn by
    `rung_draws`. Returns (predictions, form term, scheme)."""
    form = rung_form_term(fit, shape, data, options, pi_draws=RUNG_DRAWS)
    scheme = rung_draws(form, data)
    drawn, drawn_shape = (
        prediction_draws(fit, data, options, scheme),
        prediction_draws(shape, data, options, scheme),
    )
    pred = predict_runs(drawn, N, D, flops, data, drawn_shape, options.level, options.seed, form=form)
    return pred, form, scheme
