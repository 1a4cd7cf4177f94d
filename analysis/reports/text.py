"""Number formatting shared by the laws' summaries and the report: plain text (`fmt`), Markdown table
cells (`md`) and bootstrap intervals (`ci_text`). Each law's own text is its module's `summary` and
`section` hooks (`analysis.fits`)."""

from __future__ import annotations

import numpy as np


def fmt(v, spec=".4g"):
    """`v` formatted, or "nan" for None / NaN (plain text)."""
    return "nan" if v is None or v != v else format(v, spec)


def md(v, spec=".4g"):
    """`v` formatted, or an en dash for None / non-finite (Markdown tables)."""
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else format(v, spec)


def ci_text(fit, name, spec=".3g"):
    """ " [lo, hi]" of parameter `name`'s bootstrap interval, or "" without one."""
    ci = (fit.ci or {}).get(name)
    return f" [{ci['lo']:{spec}}, {ci['hi']:{spec}}]" if ci else ""
