"""The harness: plan a run, compute heatmaps once (cached, resumable), score, store, publish."""
from __future__ import annotations

import argparse


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML file with any of these options (command line wins)")
    p.add_argument("--methods", default=None, help="shell wildcards, e.g. 'grad*,mask' (default: all)")
    p.add_argument("--model", default=None, help="model name(s), comma-separated (default: efficientnet_lite0)")
    p.add_argument("--weights", action="append", metavar="[MODEL=]PATH", help="weights file for a model")
    p.add_argument("--dataset", action="append", metavar="NAME[:PATH]",
                   help="sample (default), imagenet:/data/ILSVRC2012, coco:/data/coco (repeatable)")
    p.add_argument("--split", help="dataset split (COCO: val2014, val2017, train2017 ...)")
    p.add_argument("--dataset-option", "-d", action="append", metavar="NAME=VALUE",
                   help="dataset option, e.g. -d heldout=5000 -d cap_per_category=400")
    p.add_argument("--limit", type=int, help="use only the first N samples of each dataset")
    p.add_argument("--benchmarks", default=None, help="shell wildcards (default: all)")
    p.add_argument("--param", "-p", action="append", metavar="[METHOD.]NAME=VALUE",
                   help="method parameter, e.g. -p mask.iterations=100 -p layer=inception4e")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--batch-size", type=int, default=None, help="samples per method call (default 16)")
    p.add_argument("--workers", type=int, default=None, help="data loader workers (default 2)")
    p.add_argument("--runs-dir", default=None, help="where runs and the heatmap cache live (default: runs)")
    p.add_argument("--run-id", default=None, help="name of the run directory (default: from the settings)")
    p.add_argument("--seed", type=int, default=None, help="seed for methods, splits and bootstrap (default 0)")
    p.add_argument("--leaderboard-dir", default=None, help="also write the leaderboard files here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_from_args(args: argparse.Namespace) -> int:
    raise SystemExit("saliency-bench run: the harness is being built (issue 7)")
