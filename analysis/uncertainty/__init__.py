"""How far to believe a fit: bootstrap confidence and prediction intervals (`intervals`), back-tests
that predict held-out budgets (`holdout`), and the audit by simulation that measures each method's
bias, RMSE and interval coverage on copies of a table's own design (`audit`)."""
