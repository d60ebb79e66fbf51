"""The command line: ``saliency-bench list | explain | run | leaderboard | compare``."""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console

from .kinds import KINDS

# The parser, and so ``--help``, needs none of the registry, torch or a plugin: those are
# imported by the command that uses them.
console = Console(emoji=False)


def _load_plugins(files: Sequence[str] | None) -> None:
    if files:
        from . import registry

        for f in files:
            registry.load_plugin_file(f)


# --------------------------------------------------------------------------------------------
def _short(value: Any) -> str:
    """An option's value for a table: an evenly spaced grid as ``start:step:stop`` (MATLAB's
    notation, as docs/PROTOCOLS.md §3 writes the alpha grids), a dict of them item by item."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)) and len(value) > 3 and all(isinstance(v, (int, float)) for v in value):
        step = value[1] - value[0]
        if step > 0 and all(abs((b - a) - step) < 1e-9 for a, b in zip(value, value[1:])):
            return f"{value[0]:g}:{step:g}:{value[-1]:g}"
    return repr(value)


def cmd_list(args: argparse.Namespace) -> int:
    """One line per item, fitted to the terminal; ``list KIND NAME`` (an exact name): its details."""
    from .listing import print_list

    return print_list(args.kind, args.pattern, console, short=_short)


def cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from . import registry
    from .config import default_device, parse_params
    from .contracts import POINT, check_output
    from .imageio import display_map, load_rgb, overlay, to_input
    from .plan import apply_params, select_methods
    from .targets import Targets

    device = args.device or default_device()
    model = registry.get_model(args.model, weights=args.weights, device=device)
    params = parse_params(args.param)
    if args.layer:
        params.setdefault("*", {})["layer"] = args.layer
    chosen = apply_params(select_methods(args.method), params)
    if len(chosen) != 1:
        raise ValueError(f"explain draws one method; '{args.method}' with these parameters gives "
                         f"{len(chosen)}: {', '.join(m.name for m in chosen)}")
    method = chosen[0]
    image = load_rgb(args.image)
    x = model.preprocess(to_input(image, model.input_size)[None])
    if args.target is None:
        with torch.no_grad():
            target = int(model.net(x).argmax(1))
    else:
        target = model.class_index(args.target)
    views = {}
    for name in method.views:  # inputs made from the original image, as the harness makes them
        v = method.make_view(name, image, model.input_size)
        views[name] = None if v is None else model.preprocess(v[None])
    maps, info = method.explain(model, x, Targets([target], device=x.device), **views)
    bad = check_output(method, maps, 1)
    if bad:
        raise SystemExit(f"error: {bad[0]}")
    cls = model.classes[target]
    title = f"{method.name} | {model.name} | {target} {cls.name}"
    w, h = image.size
    if method.kind == POINT:
        px, py = maps[0].tolist()
        ih, iw = model.input_size
        pic = overlay(image, point=(px * w / iw, py * h / ih), title=title)
    else:
        pic = overlay(image, display_map(maps[0].detach().float().cpu().numpy(), model.input_size), title=title)
    out = Path(args.out or f"{Path(args.image).stem}_{method.name}.png")
    pic.save(out)
    extra = "".join(f", {k}={np.asarray(v.cpu() if hasattr(v, 'cpu') else v).reshape(-1)[0]:.4g}"
                    for k, v in info.items() if np.asarray(v.cpu() if hasattr(v, 'cpu') else v).size)
    console.print(f"{method.name} on {args.image} for class {target} ({cls.wnid} {cls.name}){extra} -> {out}",
                  soft_wrap=True, highlight=False, markup=False)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run_from_args

    return run_from_args(args)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from .report import write_leaderboard

    if args.summarize:
        from .summary import summarize_run

        for model, dataset in summarize_run(Path(args.run)):
            console.print(f"summarised {model} on {dataset} from its per-sample records")
    for path in write_leaderboard(Path(args.run), formats=args.format.split(","), out=args.out):
        console.print(f"wrote {path}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare_runs
    from .compare_view import print_table, write

    if len(args.runs) < 2:
        raise ValueError("compare needs two run directories or more (runs/<id> runs/<id> ...)")
    table = compare_runs(args.runs)
    print_table(table, console)
    if args.out:
        for path in write(table, args.out, args.format.split(",")):
            console.print(f"wrote {path}", highlight=False)
    return 0


# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="saliency-bench", description=__doc__)
    p.add_argument("--plugin", action="append", metavar="FILE.py",
                   help="load methods/models/datasets/benchmarks from a Python file (repeatable)")
    sub = p.add_subparsers(dest="command", required=True)

    lp = sub.add_parser("list", help="list registered methods, models, datasets, benchmarks")
    lp.add_argument("kind", nargs="?", default="all", choices=("all",) + KINDS)
    lp.add_argument("pattern", nargs="?", default="*", help="shell wildcards, comma-separated")
    lp.set_defaults(func=cmd_list)

    ep = sub.add_parser("explain", help="draw one method's heatmap over an image")
    ep.add_argument("image")
    ep.add_argument("--method", "-m", required=True)
    ep.add_argument("--model", default="efficientnet_lite0")
    ep.add_argument("--weights", help="weights file for the model (default: shipped / torch hub cache)")
    ep.add_argument("--target", help="class index, WordNet id or name (default: the top prediction)")
    ep.add_argument("--layer", help="layer for the method (role, alias such as pool3, or module path)")
    ep.add_argument("--param", "-p", action="append", metavar="NAME=VALUE", help="method parameter")
    ep.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    ep.add_argument("--out", "-o", help="PNG to write (default: IMAGE_METHOD.png)")
    ep.set_defaults(func=cmd_explain)

    from .config import add_run_arguments

    rp = sub.add_parser("run", help="run methods x models x datasets x benchmarks -> leaderboard")
    add_run_arguments(rp)
    rp.set_defaults(func=cmd_run)

    bp = sub.add_parser("leaderboard", help="(re)write the leaderboard of a run directory")
    bp.add_argument("run", help="run directory (runs/<id>)")
    bp.add_argument("--format", default="md,html,csv,json", help="md,html,csv,json")
    bp.add_argument("--out", help="folder to write to (default: the run directory)")
    bp.add_argument("--summarize", action="store_true",
                    help="first recompute the summaries from the per-sample records (an interrupted run's "
                         "leaderboard shows the samples it finished)")
    bp.set_defaults(func=cmd_leaderboard)

    cp = sub.add_parser("compare", help="one table from several runs, with paired differences")
    cp.add_argument("runs", nargs="+", metavar="RUN", help="run directories (runs/<id>); the first is the reference")
    cp.add_argument("--format", default="md,html,csv,json", help="with --out: md,html,csv,json")
    cp.add_argument("--out", help="folder to write compare.{md,html,csv,json} to")
    cp.set_defaults(func=cmd_compare)
    return p


def quiet_idle_threads() -> None:
    """Let torch's OpenMP threads sleep when they have no work (``OMP_WAIT_POLICY=PASSIVE``),
    unless the user chose a policy. By default an idle thread spins on its core for a while
    after each parallel region, and in a run the main process's short tensor operations leave
    them spinning between batches, on the cores the loader and scoring workers need (2 cores,
    centre + localization at 500x375: 5.5 -> 4.0 ms per sample; forward+backward unchanged).
    Only before torch is imported: OpenMP reads it once, when torch loads it. The thread count,
    and with it every result, stays as it was."""
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: Sequence[str] | None = None) -> int:
    quiet_idle_threads()
    parser = build_parser()
    args = parser.parse_args(argv)
    from .registry import RegistryError

    try:
        _load_plugins(args.plugin)
        return int(args.func(args) or 0)
    except KeyboardInterrupt as e:  # one line, no traceback: what was kept, how to go on
        kept = getattr(e, "kept", None)
        words = argv if argv is not None else sys.argv[1:]
        if args.command == "run":
            line = (f"interrupted: {kept or 'nothing stored yet'}; resume with: "
                    f"saliency-bench {shlex.join(words)}")
        else:
            line = "interrupted"
        Console(stderr=True, emoji=False).print(line, markup=False, highlight=False, soft_wrap=True)
        return 130
    except (RegistryError, FileNotFoundError, ValueError, TypeError, KeyError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        from rich.markup import escape

        console.print(f"[red]error:[/red] {escape(str(msg))}", highlight=False)
        return 2


if __name__ == "__main__":
    sys.exit(main())
