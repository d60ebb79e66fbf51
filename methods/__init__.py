"""Built-in saliency methods, one module per method family (installed as saliency_bench.methods).

Each module registers its methods with ``@saliency_bench.method`` and is named by an entry
point in ``pyproject.toml``: the built-ins come through the same door as any plugin.
"""
