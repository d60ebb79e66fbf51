"""What the packs share: asking whether a library is installed without importing it, and a
module imported on first use, so that registering a pack's methods costs no library import."""
from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import Any


def installed(name: str) -> bool:
    """Whether the top-level package ``name`` can be imported (found, not imported)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder that refuses it; a module set to None
        return False


class LazyModule:
    """Stands for the module ``name``; imports it at the first attribute read."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name}{'' if self._module is None else ' (imported)'}>"
