"""Benchmarks behind `lab bench`: timing the compiled training step against the matmul peak
(`step`), cached vs uncached decoding against a memory-bandwidth roofline (`decode`), and the
printed report of the step benchmark (`report`)."""
