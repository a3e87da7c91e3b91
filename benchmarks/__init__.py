"""Benchmarks of the executor: overhead against plain forward passes, speed-up over the recursive
oracle, scaling in examples and hypothesis size, and the cost of sampling.

Run ``python -m benchmarks.run`` (``--quick`` for a two-minute check). Benchmarks are not tests:
nothing here asserts a timing.
"""
