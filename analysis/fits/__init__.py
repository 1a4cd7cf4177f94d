"""The laws, one module each: parametric, isoflop, envelope, kaplan, vpnls, loss_curve,
data_constrained, task, ptq, lr. Each holds its fitter, bootstrap and back-test, its text for
`lab fit` and the report, its own figure if it has one, and the hooks and metadata that
`analysis.methods` finds by name (see that module's docstring for the convention)."""
