"""Numerical solvers the laws share: the Huber log-sum-exp objective and its batched L-BFGS
(`huber_lse`, `lbfgs`, JAX), variable projection (`varpro`, numpy), the scipy L-BFGS-B reference
(`reference`), JAX's persistent compilation cache (`jaxcache`) and the progress line of long fits
(`progress`)."""
