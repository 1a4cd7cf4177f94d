"""Training: the optimizer, the jitted step, the one run loop and its cadence, checkpoints,
interrupts, multi-host and the process runtime; packed training (many small models in one
program) in `lab.training.packed`."""
