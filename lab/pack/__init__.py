"""Packed sweeps: many small runs of one shape trained as one vmapped, jitted step.

`lab.pack.step` holds the packed step (members stacked on a leading axis, per-member seeds,
learning rates, weight decays and warmups as data); `lab.pack.train.train_pack` trains a pack,
each member writing its own run directory as an unpacked run would.
"""
