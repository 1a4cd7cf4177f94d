"""The sharding policy — the only module that names mesh axes.

A mesh always exists, with axes (data, fsdp, tensor); any of them may have size 1, so one code
path serves a laptop CPU, one GPU and a pod. Parameters carry *logical* axis names from the
moment they are created (`lab.model.layers.param`); `RULES` maps each logical name onto mesh axes:

* data parallel: the batch is split over `data` (and `fsdp`); parameters are replicated there.
* FSDP: parameters and optimizer state are split over `fsdp` along their model-width (`embed`)
  dimension, and gathered by XLA where a matmul needs them.
* tensor parallel (Megatron): attention heads, the MLP hidden dimension and the vocabulary are
  split over `tensor`.

A parameter whose logical axis has no rule is an error, never silently replicated, and so is a
dimension not divisible by the product of its mesh axes.
"""

from __future__ import annotations

import math
import re

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from lab.config import ConfigError

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis name -> mesh axis (or tuple of mesh axes, or None = replicated on purpose)
RULES: dict[str, str | tuple[str, ...] | None] = {
    # parameters
    "vocab": "tensor",
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "head_dim": None,
    "mlp": "tensor",
    "norm": None,
    "pos": None,
    "layers": None,  # the leading axis of the scanned block stack: every device holds every layer
    # activations
    "batch": ("data", "fsdp"),
    "seq": None,
    "act_embed": None,
    "act_heads": "tensor",
    "act_kv_heads": "tensor",
    "act_mlp": "tensor",
    "act_vocab": "tensor",
}


def parse_mesh(spec: str, n_devices: int) -> dict[str, int]:
    """'data=2,fsdp=2,tensor=2' -> axis sizes; '' puts every device on `data`; one size may be -1."""
    sizes = {axis: 1 for axis in MESH_AXES}
    if not spec:
        sizes["data"] = n_devices
        return sizes
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\w+)\s*=\s*(-?\d+)\s*", part)
        if not m or m.group(1) not in MESH_AXES:
            raise ConfigError(
                f"bad mesh {spec!r}: expected e.g. data=2,fsdp=2,tensor=2 (axes {', '.join(MESH_AXES)})"
            )
        sizes[m.group(1)] = int(m.group(2))
    free = [a for a, s in sizes.items() if s == -1]
    if len(free) > 1 or any(s == 0 or s < -1 for s in sizes.values()):
        raise ConfigError(f"bad mesh {spec!r}: sizes must be positive (at most one may be -1)")
    if free:
        rest = math.prod(s for s in sizes.values() if s != -1)
        sizes[free[0]] = n_devices // rest if n_devices % rest == 0 else 0
    if math.prod(sizes.values()) != n_devices:
        raise ConfigError(f"mesh {spec!r} needs {math.prod(sizes.values())} devices but {n_devices} are available")
    return sizes


def make_mesh(spec: str = "") -> jax.sharding.Mesh:
    sizes = parse_mesh(spec, jax.device_count())
    shape = tuple(sizes[a] for a in MESH_AXES)
    return jax.make_mesh(shape, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES))


def serial_steps(mesh) -> bool:
    """Whether each training step must finish before the next is dispatched: on a mesh of several CPU
    devices. jaxlib 0.10's CPU runtime deadlocks at random when two programs with a collective over
    several CPU devices are in flight at once (one device's all-reduce waits for a partner that never
    arrives; XLA aborts the process after 40 s). Measured on 2 CPU devices: a tiny program chained
    50-300 times aborted in 13 of 14 runs with its steps in flight and never (8 of 8) with each step
    awaited; the lab's own loop, with up to 50 steps in flight, passed 14 of 14 here but aborted once
    on CI. Awaiting changes no value; on accelerators (and one CPU device) steps stay asynchronous."""
    return mesh.devices.size > 1 and mesh.devices.flat[0].platform == "cpu"


def logical_to_spec(logical_axes, shape=None, mesh=None) -> P:
    """PartitionSpec for logical axis names; checks rules exist and dimensions divide."""
    out = []
    for i, name in enumerate(logical_axes):
        if name is None:
            out.append(None)
            continue
        if name not in RULES:
            raise ConfigError(f"no sharding rule for logical axis {name!r}; add it to lab.sharding.RULES")
        axes = RULES[name]
        if mesh is not None and shape is not None and axes is not None:
            group = axes if isinstance(axes, tuple) else (axes,)
            size = math.prod(mesh.shape[a] for a in group)
            if shape[i] % size:
                raise ConfigError(
                    f"dimension {name!r} of size {shape[i]} is not divisible by mesh axes {group} of size {size}"
                )
        out.append(axes)
    return P(*out)


def param_shardings(abstract_state, mesh):
    """NamedSharding for every parameter of an abstract `nnx.State`, from its `logical_axes`
    metadata, as a pure dict shaped like `nnx.to_pure_dict(state)`."""
    from flax import nnx

    def one(path, variable):
        name = "/".join(str(p) for p in path)
        axes = variable.get_metadata().get("logical_axes")
        if axes is None:
            raise ConfigError(f"parameter {name} has no logical_axes; every parameter needs a sharding rule")
        try:
            return NamedSharding(mesh, logical_to_spec(axes, variable.shape, mesh))
        except ConfigError as e:
            raise ConfigError(f"parameter {name}: {e}") from None

    return nnx.to_pure_dict(nnx.map_state(one, abstract_state))


def logical_sharding(mesh, logical_axes, shape=None) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(logical_axes, shape, mesh))


def batch_sharding(mesh) -> NamedSharding:
    return logical_sharding(mesh, ("batch", "seq"))


def val_sharding(mesh) -> NamedSharding:
    """A validation set [N, B, T+1]: each of its N batches split like a training batch."""
    return logical_sharding(mesh, (None, "batch", "seq"))


def replicated(mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def constrain(x, logical_axes):
    """Constrain an activation's sharding by logical names; a no-op outside a mesh context."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or math.prod(mesh.shape.values()) == 1:
        return x
    return jax.lax.with_sharding_constraint(x, logical_to_spec(logical_axes))


def per_device(fn, in_axes, out_axes):
    """`fn` run by each device on its own shard of its arguments (`jax.shard_map` over the current
    mesh), with in/out shardings given by logical axis names; `fn` itself on one device or outside
    a mesh. For kernels written for one device's data, such as the chunked attention's loop."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or math.prod(mesh.shape.values()) == 1:
        return fn
    return jax.shard_map(
        fn,
        in_specs=tuple(logical_to_spec(a) for a in in_axes),
        out_specs=logical_to_spec(out_axes),
        check_vma=False,
    )


def bytes_per_device(tree) -> int:
    """Bytes of `tree` held on one device (the largest shard of each array, summed)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        if hasattr(leaf, "addressable_shards") and leaf.addressable_shards:
            total += max(s.data.nbytes for s in leaf.addressable_shards)
        elif hasattr(leaf, "nbytes"):
            total += np.asarray(leaf).nbytes
    return total
