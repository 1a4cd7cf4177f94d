"""What a study worker is asked to do: the typed contents of a task file, DIR/tasks/ID.json.

    TaskSpec   one cell: its run directory, config, the study's fields for its result, the steps
               whose checkpoints its branches start from, and (a cooldown branch) its long run
    PackSpec   a pack of same-program cells trained as one vmapped step (lab.study.packs)

The study's task writer (`lab.study.taskwriter`) builds them, packing transforms them
(`TaskSpec.in_pack`), the worker (`lab.study.worker`) reads them back with `read_task`. Both are
frozen: a spec is never changed after it is built. The JSON is the one task files have always
had (the same keys in the same order), so a worker reads task files written before these types;
`tracker` and `group` (`lab study --tracker`: the cell logs live, grouped by the study) are written
only when set, `final_scores` only when false (the study's final scores are off or deferred).
Task files are rewritten by the driver before every launch; nothing else depends on old ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from lab.config import RunConfig
from lab.overrides import from_dict


@dataclass(frozen=True)
class TaskSpec:
    """One cell for a worker: train `config` into `run_dir` (resuming), recording `extra_result`
    in its result.json; a cooldown branch (`branch_of`) first copies its long run's checkpoint at
    `branch_step` from `parent_dir`. `tracker` ("tensorboard" | "wandb"): the cell logs live into
    it as it trains (`lab.training.trackers`), grouped by `group` (the study's name)."""

    cell_id: str
    run_dir: Path
    config: RunConfig
    extra_result: dict  # the study's fields of the cell's result and row (lab.study.results.study_fields)
    keep_steps: tuple[int, ...] = ()  # a long run: keep the checkpoints its branches start from
    branch_of: str | None = None
    branch_step: int = 0
    parent_dir: Path | None = None  # the long run's directory, for a branch
    tracker: str | None = None
    group: str | None = None
    final_scores: bool = True  # False: the run's final scores are left out (lab.study.spec final_scores)

    def in_pack(self, pack_id: str) -> TaskSpec:
        """This cell as a member of pack `pack_id` (its result and row carry the pack's id)."""
        return dataclasses.replace(self, extra_result={**self.extra_result, "pack_id": pack_id})

    def to_dict(self) -> dict:
        optional = {k: v for k, v in (("tracker", self.tracker), ("group", self.group)) if v is not None}
        if not self.final_scores:
            optional["final_scores"] = False
        return {
            "cell_id": self.cell_id,
            "run_dir": str(self.run_dir),
            "config": self.config.to_dict(),
            "extra_result": dict(self.extra_result),
            "keep_steps": list(self.keep_steps),
            "branch_of": self.branch_of,
            "branch_step": self.branch_step,
            "parent_dir": str(self.parent_dir) if self.parent_dir is not None else None,
            **optional,
        }

    @classmethod
    def from_dict(cls, data: dict) -> TaskSpec:
        parent = data.get("parent_dir")
        return cls(
            cell_id=data["cell_id"],
            run_dir=Path(data["run_dir"]),
            config=from_dict(RunConfig, data["config"]),
            extra_result=dict(data["extra_result"]),
            keep_steps=tuple(data.get("keep_steps", ())),
            branch_of=data.get("branch_of"),
            branch_step=data.get("branch_step", 0),
            parent_dir=Path(parent) if parent else None,
            tracker=data.get("tracker"),
            group=data.get("group"),
            final_scores=data.get("final_scores", True),
        )


@dataclass(frozen=True)
class PackSpec:
    """A pack's members, trained together by one worker (lab.study.packs plans them). Every member
    is listed, finished ones too: they stay idle in the pack so the others' program is unchanged."""

    pack_id: str
    members: tuple[TaskSpec, ...]

    def to_dict(self) -> dict:
        return {"pack_id": self.pack_id, "members": [m.to_dict() for m in self.members]}

    @classmethod
    def from_dict(cls, data: dict) -> PackSpec:
        return cls(data["pack_id"], tuple(TaskSpec.from_dict(m) for m in data["members"]))


Spec = TaskSpec | PackSpec


def task_id(spec: Spec) -> str:
    """The id that names the task's files (ID.json, ID.log, ID.lock): the cell's or the pack's."""
    return spec.pack_id if isinstance(spec, PackSpec) else spec.cell_id


def spec_from_dict(data: dict) -> Spec:
    """The spec a task file's JSON holds (a pack has `members`)."""
    return PackSpec.from_dict(data) if "members" in data else TaskSpec.from_dict(data)


def read_task(path: Path) -> Spec:
    from lab.files import read_json

    return spec_from_dict(read_json(Path(path)))
