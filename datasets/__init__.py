"""Dataset adapters and the bundled sample (installed as saliency_bench.datasets)."""
