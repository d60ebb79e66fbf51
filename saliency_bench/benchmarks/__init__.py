"""Benchmarks: the pointing game and weak localization (PROTOCOLS.md §2-3), each a pure,
vectorised function of (heatmaps or points, ground truth) wrapped in a :class:`Benchmark`."""
