"""The four kinds of plugin, each with its registry and entry-point group ``saliency_bench.<kind>``.

A module of its own, importing nothing, so that the command line can build its parser (and
answer ``--help``) without importing the registry, and with it torch.
"""
KINDS = ("methods", "models", "datasets", "benchmarks")
