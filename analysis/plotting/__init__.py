"""Figures: (a)-(e) of a study drawn from several laws' fits (`plots`), the data-constrained law's
loss vs epochs (`data_constrained`), and the shared writer of each figure with its data CSV
(`figure_files`). A law's own figure is its `figure` hook (`analysis.fits`)."""
