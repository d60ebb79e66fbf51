"""Code for a fresh interpreter that notes OpenMP's wait policy when torch is first imported (the
command line's start, and ``perf/steady_boot.py``'s, which must match it)."""
from __future__ import annotations

_PROBE = ("import os, runpy, sys\n"
          "seen = []\n"
          "class Probe:  # notes the policy when torch is first imported\n"
          "    def find_spec(self, name, path=None, target=None):\n"
          "        if name == 'torch' and not seen:\n"
          "            seen.append(os.environ.get('OMP_WAIT_POLICY'))\n"
          "        return None\n"
          "sys.meta_path.insert(0, Probe())\n")


def probe_code(body: str) -> str:
    """``body`` run after the probe is in place; the process prints ``policy at torch import [...]``."""
    return _PROBE + body + "print('policy at torch import', seen)\n"
