"""Studies: a grid of model sizes x token budgets (or FLOP budgets) written as one Python file,
expanded into cells, run by a launcher, collected into one results table.

    from lab.study import Study
    def study():
        return Study(name="mine", base=RunConfig(...), sizes=[{"d_model": 32}, ...], budgets=[1e12, 3e12])
"""

from lab.study.policy import CellInfo, deepseek_policy, default_policy, shape_for_width, width_scaled_lr
from lab.study.spec import Cell, Study, expand

__all__ = [
    "Cell",
    "CellInfo",
    "Study",
    "deepseek_policy",
    "default_policy",
    "expand",
    "shape_for_width",
    "width_scaled_lr",
]
