"""Registries: discovery through real entry points, plugin files, wildcards, duplicates, broken plugins."""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from saliency_bench import registry
from saliency_bench.registry import PluginError, Registry, RegistryError

PLUGINS = Path(__file__).parent / "plugins"


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A real installed distribution: a *.dist-info with entry_points.txt on sys.path."""
    (tmp_path / "toyplug_methods.py").write_text(textwrap.dedent('''
        import saliency_bench

        @saliency_bench.method("toyplug_max")
        def toyplug_max(model, x, targets, *, scale: float = 2.0):
            """Max over channels, scaled."""
            return x.amax(1) * scale

        @saliency_bench.method("toyplug_point", kind="point")
        def toyplug_point(model, x, targets):
            return x.new_zeros(x.shape[0], 2)

        def plain(model, x, targets):
            """An undecorated function named by an object entry point."""
            return x.mean(1)
    '''))
    (tmp_path / "toyplug_broken.py").write_text("raise ImportError('toyplug needs a missing library')\n")
    dist = tmp_path / "toyplug-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: toyplug\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""
        [saliency_bench.methods]
        toyplug = toyplug_methods
        toyplug_plain = toyplug_methods:plain
        toyplug_broken = toyplug_broken
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in ("toyplug_methods", "toyplug_broken"):
        sys.modules.pop(mod, None)


def test_builtin_method_is_registered_through_our_own_entry_point():
    reg = Registry("methods")
    assert "gradient" in reg.names()
    assert "entry point 'gradient = saliency_bench.methods.gradient'" in reg.source("gradient")


def test_installed_plugin_module_and_object_entry_points_are_discovered(installed_plugin):
    reg = Registry("methods")
    names = reg.names()
    assert {"toyplug_max", "toyplug_point", "toyplug_plain", "gradient"} <= set(names)
    assert reg.get("toyplug_point").kind == "point"
    assert reg.get("toyplug_max").defaults == {"scale": 2.0}
    assert "from toyplug" in reg.source("toyplug_max")
    assert reg.get("toyplug_plain").doc.startswith("An undecorated function")


def test_broken_plugin_breaks_only_when_selected_and_names_itself(installed_plugin):
    reg = Registry("methods")
    assert "toyplug_max" in reg.select("toyplug_m*")  # the broken one does not get in the way
    with pytest.raises(PluginError, match="toyplug_broken.*missing library"):
        reg.select("toyplug_broken")
    with pytest.raises(PluginError, match="toyplug_broken"):
        reg.select("toyplug*")
    assert "toyplug_broken" not in reg.select("*", skip_broken=True)
    assert "toyplug_broken" in reg.broken


def test_wildcard_selection_keeps_order_and_drops_repeats(installed_plugin):
    reg = Registry("methods")
    assert reg.select("toyplug_p*,toyplug_max,toyplug_*", skip_broken=True) == [
        "toyplug_plain", "toyplug_point", "toyplug_max"]
    with pytest.raises(RegistryError, match="no method matches 'nothing\\*'.*known: .*gradient"):
        reg.select("nothing*")


def test_duplicate_names_fail_naming_both_sources(tmp_path):
    reg = Registry("methods")
    a = tmp_path / "a.py"
    a.write_text("import saliency_bench\n@saliency_bench.method('gradient')\ndef g(model, x, t):\n    return x.mean(1)\n")
    import importlib.util

    spec = importlib.util.spec_from_file_location("dup_a", a)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    with pytest.raises(RegistryError, match=r"'gradient' is registered twice: by entry point .*gradient.* and by plugin file .*a.py"):
        reg.add_from(m, f"plugin file {a}")


def test_plugin_file_registers_every_kind():
    added = registry.load_plugin_file(PLUGINS / "toy.py")
    assert "brightness" in added["methods"] and "toy_net" in added["models"] and "toy" in added["datasets"]
    assert "brightness" in registry.list_methods("bright*")
    m = registry.get_method("brightness", power=2.0)
    assert m.params == {"power": 2.0} and m.key != registry.get_method("brightness").key
    with pytest.raises(TypeError, match="no parameter sigma.*power=1.0"):
        registry.get_method("brightness", sigma=1)


def test_plugin_file_that_fails_names_the_file(tmp_path):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("import no_such_module_anywhere\n")
    with pytest.raises(PluginError, match="bad_plugin.py failed to load: ModuleNotFoundError"):
        registry.load_plugin_file(bad)
