"""The figures of single laws, beside figures (a)-(e): loss vs weight bits (ptq), loss vs learning
rate (lr), in-context accuracy vs compute (task). `lab plot --figures q|l|i` draws them, and the
report draws each one whose law it fitted."""

from __future__ import annotations

from .options import TableOptions


def _rows(source, table: TableOptions):
    from .table import filter_rows, load_table

    return filter_rows(load_table(source), where=table.where, status=table.status)


def _figure_q(source, table, options, out, formats, fit=None):
    from .fit_ptq import plot_loss_vs_bits

    return plot_loss_vs_bits(_rows(source, table), out, formats)


def _figure_l(source, table, options, out, formats, fit=None):
    from .fit_lr import plot_loss_vs_lr

    return plot_loss_vs_lr(_rows(source, table), out, formats)


def _figure_i(source, table, options, out, formats, fit=None):
    from .fit_task import fit_task, plot_task
    from .inputs import load

    if fit is None:  # the report passes the fit it already has
        fit = fit_task(load(source, table).data, seed=options.seed)
    return plot_task(fit, out, formats)


# letter -> (the law it draws, its function(source, table options, fit options, out dir, formats, fit of
# that law or None) -> paths); loss vs bits and vs LR are drawn from the rows, not from the fit
EXTRA_FIGURES = {"q": ("ptq", _figure_q), "l": ("lr", _figure_l), "i": ("task", _figure_i)}
