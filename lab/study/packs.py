"""Packing a study's cells: cells whose programs have the same shapes and step count (they differ
only in seed, learning rate, weight decay or warmup: `lab.training.packed.step.pack_key`) are trained K at a
time as one vmapped step (`lab.training.packed`), one worker task per pack.

Packs are planned over all of the study's cells, in study order, so a pack's id is the same every
time the study runs; a re-run trains the pack's unfinished members. Cells that cannot share a
program (other shapes or steps, WSD long runs with branch points, cooldown branches) go in other
packs or run alone — never an error. A pack whose other members finished (or diverged) keeps them,
idle, so its last members resume in the program they started in, under the same id. A member's
row and result.json carry its `pack_id`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from lab.config import ConfigError
from lab.study.spec import Cell
from lab.study.tasks import PackSpec, TaskSpec

PACK_ON_ACCELERATORS = 8  # the default K on GPU/TPU, where tiny cells leave the device mostly idle


def check_pack(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"--pack must be a whole number >= 1 (members per pack), got {k!r}")
    return k


def default_pack(study_pack: int) -> int:
    """The study's `pack`, or (0 = auto) PACK_ON_ACCELERATORS on an accelerator and 1 on CPU."""
    if study_pack:
        return check_pack(study_pack)
    return PACK_ON_ACCELERATORS if jax.default_backend() in ("gpu", "cuda", "rocm", "tpu") else 1


def _packable(cell: Cell) -> bool:
    return not cell.branch_of and not cell.keep_steps


def plan_packs(cells: list[Cell], k: int) -> list[tuple[str, list[Cell]]]:
    """[(pack_id, member cells)]: same-program cells in study order, at most k per pack; a cell
    alone is its own pack (pack_id None)."""
    from lab.training.packed.step import pack_key

    groups: dict[str, list[Cell]] = {}
    alone = []
    for cell in cells:
        if k > 1 and _packable(cell):
            groups.setdefault(pack_key(cell.config), []).append(cell)
        else:
            alone.append(cell)
    packs = []
    for members in groups.values():
        for i in range(0, len(members), k):
            chunk = members[i : i + k]
            packs.append((f"pack-{chunk[0].cell_id}" if len(chunk) > 1 else None, chunk))
    return packs + [(None, [c]) for c in alone]


def describe_packs(cells: list[Cell], k: int) -> str:
    """What `--dry-run` prints about packing."""
    packs = plan_packs(cells, k)
    packed = [(pid, m) for pid, m in packs if pid]
    lines = [
        f"--pack {k}: {len(packs)} tasks for {len(cells)} cells ({len(packed)} packs, "
        f"{len(packs) - len(packed)} cells alone)"
    ]
    for pid, members in packs:
        names = ", ".join(c.cell_id for c in members)
        lines.append(
            f"  {pid}: {len(members)} x {members[0].config.total_steps} steps: {names}"
            if pid
            else f"  alone: {names}"
        )
    return "\n".join(lines)


def pack_specs(
    cells: list[Cell], todo: list[Cell], k: int, spec: Callable[[Cell], TaskSpec]
) -> list[TaskSpec | PackSpec]:
    """The task specs for the cells to run now (`todo`), packs planned over all of the study's
    `cells`; `spec(cell)` is a cell's spec alone. A pack lists every member, finished ones too (they
    stay idle in the pack: the others' program is unchanged), each carrying the pack's id."""
    todo_ids = {c.cell_id for c in todo}
    specs: list[TaskSpec | PackSpec] = []
    for pid, members in plan_packs(cells, k):
        if not any(c.cell_id in todo_ids for c in members):
            continue
        if pid is None:
            specs += [spec(c) for c in members]
        else:
            specs.append(PackSpec(pid, tuple(spec(c).in_pack(pid) for c in members)))
    return specs
