"""A simulated site on loopback for the demo, the tests and the benchmarks."""
