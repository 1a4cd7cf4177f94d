"""Evaluations of a trained run beyond its validation loss: the final scores every completed run
records (`final`: losses with the weights quantized after training, weight bytes, in-context
recall), the in-context associative-recall task (`icl`) and KV-cache decoding from a run's
checkpoint (`generate`, behind `lab sample`)."""
