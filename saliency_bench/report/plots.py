"""The score-against-speed plots of the HTML page: inline SVG, drawn here, no scripts, no network."""
from __future__ import annotations

import html
import math

from .axes import nice_ticks
from .tables import used_columns

SPEED = "images_per_s"  # the column the plots take their x from


def speed_columns(table: dict) -> tuple[dict | None, list[dict]]:
    """The images/s column of a table and the score columns to plot against it."""
    cols = used_columns(table)
    speed = next((c for c in cols if c["key"].partition("[")[0] == SPEED), None)
    if speed is None:
        return None, []
    bench = speed.get("benchmark")
    return speed, [c for c in cols if c.get("benchmark") != bench and c is not speed]


def speed_plot_svg(table: dict, col: dict, speed: dict, width: int = 440, height: int = 300) -> str:
    """An inline SVG: one point per method at (images/s on a log axis, score), the 95% interval
    as a vertical bar, the method's name beside it. Drawn here, without scripts or a network."""
    e = html.escape
    pts = []
    for r in table["rows"]:
        m, s = r.get(col["key"]) or {}, r.get(speed["key"]) or {}
        v, x = m.get("value"), s.get("value")
        if v is None or x is None or not (x > 0) or not math.isfinite(v):
            continue
        ci = m.get("ci") if col.get("interval", True) else None
        lo, hi = (ci[0], ci[1]) if ci and None not in ci[:2] else (v, v)
        pts.append((r["method"], math.log10(x), x, v, lo, hi))
    if not pts:
        return ""
    left, right, top, bottom = 52, 18, 14, 40
    xs = [p[1] for p in pts]
    x0, x1 = min(xs), max(xs)
    if x1 - x0 < 1:  # at least a decade, centred
        mid = (x0 + x1) / 2
        x0, x1 = mid - 0.5, mid + 0.5
    pad = 0.08 * (x1 - x0)
    x0, x1 = x0 - pad, x1 + pad
    y0, y1 = min(p[4] for p in pts), max(p[5] for p in pts)
    if y1 - y0 < 1e-9:
        y0, y1 = y0 - 1, y1 + 1
    ypad = 0.08 * (y1 - y0)
    y0, y1 = y0 - ypad, y1 + ypad
    pw, ph = width - left - right, height - top - bottom

    def X(lx: float) -> float:
        return left + (lx - x0) / (x1 - x0) * pw

    def Y(v: float) -> float:
        return top + (1 - (v - y0) / (y1 - y0)) * ph

    out = [f"<svg class='speed' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' role='img' aria-label='{e(col['title'])} against images/s'>"]
    for t in nice_ticks(y0, y1):
        y = Y(t)
        out.append(f"<line class='grid' x1='{left}' x2='{left + pw}' y1='{y:.1f}' y2='{y:.1f}'/>"
                   f"<text x='{left - 4}' y='{y + 3:.1f}' text-anchor='end'>{t:g}</text>")
    decades = range(math.ceil(x0), math.floor(x1) + 1)
    for d in decades:
        for k in ((1, 2, 5) if len(decades) <= 3 else (1,)):
            lx = d + math.log10(k)
            if x0 <= lx <= x1:
                out.append(f"<line class='grid' x1='{X(lx):.1f}' x2='{X(lx):.1f}' y1='{top}' y2='{top + ph}'/>"
                           f"<text x='{X(lx):.1f}' y='{top + ph + 13}' text-anchor='middle'>{k * 10.0 ** d:g}</text>")
    out.append(f"<line class='axis' x1='{left}' x2='{left + pw}' y1='{top + ph}' y2='{top + ph}'/>"
               f"<line class='axis' x1='{left}' x2='{left}' y1='{top}' y2='{top + ph}'/>"
               f"<text x='{left + pw / 2:.1f}' y='{height - 6}' text-anchor='middle'>images/s (log scale)</text>"
               f"<text transform='translate(12,{top + ph / 2:.1f}) rotate(-90)' text-anchor='middle'>"
               f"{e(col['title'])}</text>")
    for name, lx, x, v, lo, hi in pts:
        cx, cy = X(lx), Y(v)
        tip = f"{name}: {v:.3g}" + (f" [{lo:.3g}, {hi:.3g}]" if hi > lo else "") + f" at {x:.3g} images/s"
        anchor, dx = ("end", -6) if cx > left + 0.7 * pw else ("start", 6)
        out.append(f"<g class='method' data-method='{e(name)}'><title>{e(tip)}</title>"
                   f"<line class='bar' x1='{cx:.1f}' x2='{cx:.1f}' y1='{Y(hi):.1f}' y2='{Y(lo):.1f}'/>"
                   f"<circle class='pt' cx='{cx:.1f}' cy='{cy:.1f}' r='3.5'/>"
                   f"<text x='{cx + dx:.1f}' y='{cy - 4:.1f}' text-anchor='{anchor}'>{e(name)}</text></g>")
    out.append("</svg>")
    return "".join(out)
