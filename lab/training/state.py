"""The training state (parameters + optimizer state) of a config: its abstract shapes and
shardings, known without allocating anything, and the function that creates it.
"""

from __future__ import annotations

import jax
import optax
from flax import nnx

from lab import sharding
from lab.config import RunConfig
from lab.model.transformer import Transformer


def abstract_model(cfg: RunConfig):
    """(graphdef, abstract parameter state) without allocating anything."""
    abstract = nnx.eval_shape(lambda: Transformer(cfg.model, rngs=nnx.Rngs(params=cfg.train.seed)))
    return nnx.split(abstract, nnx.Param)


# The initializer runs once, so its code is compiled unoptimized: the random draws for every
# parameter take XLA:CPU 3-4 s to optimize for a 2-layer model, and 1 s at level 0 (the same bits).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def state_creator(cfg: RunConfig, tx):
    """() -> (params, opt_state) of `cfg.train.seed`, to be jitted with the state's shardings."""

    def create():
        model = Transformer(cfg.model, rngs=nnx.Rngs(params=cfg.train.seed))
        params = nnx.to_pure_dict(nnx.split(model, nnx.Param)[1])
        return params, tx.init(params)

    return create


def state_shardings(cfg: RunConfig, mesh, tx, abstract_state=None):
    """(param shardings, optimizer-state shardings, abstract (params, opt_state)) — no allocation.
    Adam's moments take their parameter's sharding; scalars (step counts) are replicated.
    `abstract_state`: `abstract_model(cfg)[1]`, if the caller has it already."""
    if abstract_state is None:
        abstract_state = abstract_model(cfg)[1]
    param_sh = sharding.param_shardings(abstract_state, mesh)
    abstract_params = nnx.to_pure_dict(abstract_state)
    abstract = (abstract_params, jax.eval_shape(tx.init, abstract_params))
    opt_sh = optax.tree_map_params(
        tx, lambda _, s: s, abstract[1], param_sh, transform_non_params=lambda _: sharding.replicated(mesh)
    )
    return param_sh, opt_sh, abstract


def placed(abstract_tree, shardings):
    """ShapeDtypeStructs of `abstract_tree` carrying `shardings` (a tree of the same structure)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_tree, shardings)
