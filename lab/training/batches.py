"""Host batch assembly: a global batch array whose shards each process builds from its own rows."""

from __future__ import annotations

import jax


def sharded_rows(sharding_, shape, make_rows):
    """A global array whose addressable shards are built by `make_rows(row_range)` on this host:
    each process generates only the batch rows its devices hold."""
    def shard(index):
        rows = index[0]
        return make_rows(range(rows.start or 0, rows.stop if rows.stop is not None else shape[0]))[:, index[1]]

    return jax.make_array_from_callback(shape, sharding_, shard)
