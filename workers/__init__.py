"""Ready-made services for the README, the tests and the benchmarks.

Run any of them with ``prefork serve workers.MODULE:Class`` from the repository root.
"""
