"""Benchmarks, each runnable as ``python -m codeit_jax.bench.<name>``.

Every benchmark prints its figures and ends with one line holding a JSON object of them.
"""
