"""Benchmarks: accuracy on the paper's streams, throughput."""
