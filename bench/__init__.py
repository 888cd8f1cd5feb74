"""Benchmarks: `make bench` runs every scenario in bench/scenarios and rewrites docs/benchmarks.md."""
