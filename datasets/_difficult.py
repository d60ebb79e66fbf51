"""The pointing game's "difficult" subset as TorchRay defines it: not a rule, a flags file per
(image, class), from the excitation-backprop authors, shipped in the ``torchray`` package
(``torchray/benchmark/pointing_game_ebp_voc07_difficult.txt``, ``..._coco_difficult.txt``).

A row is ``NAME<TAB>f_0<TAB>...<TAB>f_{C-1}``: the image's file name without extension and one
0/1 per class in TorchRay's class order (VOC: its 20 classes alphabetically; COCO: the 80
category ids in increasing order). A sample is difficult when its class's flag is 1.

``difficult`` options of the VOC and COCO adapters: ``"paper"`` (the rule of Zhang et al.'s
text, docs/PROTOCOLS.md §2), ``"torchray"`` (the file of the installed ``torchray`` package) or a path.
A row with the wrong number of columns or a value other than 0/1 stops the run with an error
naming the file and line; a file that lists none of the dataset's images too (the flags of
another split); an image that has no row costs its samples (reason given).
"""
from __future__ import annotations

from pathlib import Path

#: COCO's 80 category ids in increasing order: the columns of TorchRay's COCO flags file.
COCO_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32,
            33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
            60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90)

TORCHRAY_FILES = {"voc": "pointing_game_ebp_voc07_difficult.txt", "coco": "pointing_game_ebp_coco_difficult.txt"}


def flags_path(difficult: str, kind: str) -> Path | None:
    """None for the paper's rule; else the flags file: TorchRay's installed one, or ``difficult`` as a path."""
    if difficult in (None, "paper"):
        return None
    if difficult == "torchray":
        name = TORCHRAY_FILES[kind]
        try:
            import torchray.benchmark as tb
        except ImportError as e:
            raise FileNotFoundError(
                f"difficult=torchray reads TorchRay's flags file {name} from the installed torchray package, "
                f"which is not installed: pip install torchray, or pass difficult=PATH to that file") from e
        path = Path(tb.__file__).parent / name
        if not path.is_file():
            raise FileNotFoundError(f"TorchRay's flags file {name} is not in {path.parent}: "
                                    "pass difficult=PATH to that file")
        return path
    path = Path(str(difficult)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"difficult flags file not found: {path} (difficult= takes 'paper', 'torchray' or a path)")
    return path


def read_flags(path: Path, columns: int) -> dict[str, tuple[bool, ...]]:
    """``{image name: flags}`` of a TorchRay flags file with ``columns`` classes per row."""
    out: dict[str, tuple[bool, ...]] = {}
    with open(path) as f:
        for line, row in enumerate(f, start=1):
            if not row.strip():
                continue
            cells = row.rstrip("\n").split("\t")
            if len(cells) != columns + 1 or any(c.strip() not in ("0", "1") for c in cells[1:]):
                raise ValueError(f"{path} line {line}: expected the image name and {columns} flags (0/1) "
                                 f"separated by tabs, got {len(cells) - 1} fields")
            out[cells[0].strip()] = tuple(c.strip() == "1" for c in cells[1:])
    return out


def check_covers(flags: dict, names: list[str], path: Path) -> None:
    if names and not any(n in flags for n in names):
        raise ValueError(f"{path} lists none of the dataset's {len(names)} images (e.g. {names[0]!r}): "
                         "the flags of another split?")
