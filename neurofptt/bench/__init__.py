"""Benchmarks that print JSON: memory and time of the learning rules."""
