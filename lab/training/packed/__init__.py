"""Packed training: K same-shape models trained in one jitted program (vmap over a member axis),
with the same loop and cadence as a single run."""
