"""The leaderboard as one self-contained HTML page: sortable tables (a column header click sorts),
the score-against-speed plots, the gallery; its style and script are ``static/leaderboard.css``
and ``static/leaderboard.js``, inlined so the page needs no network and no other file."""
from __future__ import annotations

import base64
import html
from importlib.resources import files

from .plots import speed_columns, speed_plot_svg
from .tables import alpha, cells, coverage, coverage_notes, protocol_notes, settings_lines, table_notes, used_columns


def static(name: str) -> str:
    """A file of ``report/static`` (the page's CSS and JS), without its final newline."""
    return files(__package__).joinpath("static", name).read_text(encoding="utf-8").rstrip("\n")


def _table(t: dict) -> list[str]:
    e = html.escape
    cols = used_columns(t)
    parts = [f"<h2>{e(t['model'])} on {e(t['dataset'])}</h2><table class='lb'><thead><tr><th>Method</th>"]
    parts += [f"<th title='{e(c['key'])}'>{e(c['title'])}</th>" for c in cols]
    parts.append("<th>Coverage</th></tr></thead><tbody>")
    for r, row in zip(t["rows"], cells(t, cols)):
        parts.append(f"<tr><td data-v='{e(r['method'])}'>{e(r['method'])}</td>")
        for c in row:
            m, v = c.metric, c.value
            if v is None:
                parts.append(f"<td data-v='' title='{e(m.get('note', ''))}'>–</td>")
                continue
            cls = f" class='{' '.join(sorted(c.marks))}'" if c.marks else ""
            ci = c.interval
            ci_s = f" <span class='ci'>[{ci[0]:.3g}, {ci[1]:.3g}]</span>" if ci else ""
            a = alpha(m)
            note_s = f" <span class='ci'>{e(a)}</span>" if a else ""
            parts.append(f"<td data-v='{v}'{cls} title='{e(m.get('note', ''))}'>{v:.3g}{ci_s}{note_s}</td>")
        cov = r.get("coverage") or {}
        reasons = "; ".join(f"{f['id']}: {f['reason']}" for f in cov.get("failures", [])[:10])
        parts.append(f"<td data-v='{cov.get('scored', '')}' title='{e(reasons)}'>{e(coverage(r))}</td></tr>")
    parts.append("</tbody></table>")
    fb = t.get("model_forward_backward")
    if fb:
        parts.append(f"<p>Model forward+backward: {fb['images_per_s']:.1f} images/s at batch {fb['batch_size']}.</p>")
    parts += [f"<p>alpha*: {e(why)}.</p>" for why in table_notes(t)]
    why = coverage_notes(t)
    if why:
        parts.append("<details><summary>Coverage</summary><ul>"
                     + "".join(f"<li>{e(w)}</li>" for w in why) + "</ul></details>")
    notes = protocol_notes(t, cols)
    if notes:
        parts.append("<details><summary>Protocols</summary><ul>"
                     + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul></details>")
    return parts


def _plots(t: dict) -> list[str]:
    e = html.escape
    speed, scored = speed_columns(t)
    plots = [(c, speed_plot_svg(t, c, speed)) for c in scored] if speed else []
    plots = [(c, svg) for c, svg in plots if svg]
    if not plots:
        return []
    return (["<h3>Score against speed</h3><p>One point per method; the bar is its 95% interval; "
             "images/s on a log scale.</p><div class='plots'>"]
            + [f"<figure data-column='{e(c['key'])}'>{svg}<figcaption>{e(c['title'])} "
               f"({'lower' if c.get('better') == 'lower' else 'higher'} is better)</figcaption></figure>"
               for c, svg in plots]
            + ["</div>"])


def _gallery(t: dict, gal: dict | None) -> list[str]:
    if not gal:
        return []
    e = html.escape
    methods = [r["method"] for r in t["rows"]]
    parts = ["<h3>Gallery</h3><table class='gallery'><tr><th>sample</th>"
             + "".join(f"<th>{e(m)}</th>" for m in methods) + "</tr>"]
    for sample, pics in gal.items():
        parts.append(f"<tr><td>{e(sample)}</td>")
        for m in methods:
            b = pics.get(m)
            img = f"<img alt='{e(m)}' src='data:image/jpeg;base64,{base64.b64encode(b).decode()}'>" if b else "–"
            parts.append(f"<td>{img}</td>")
        parts.append("</tr>")
    parts.append("</table>")
    return parts


def to_html(run: dict) -> str:
    e = html.escape
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>saliency-bench leaderboard</title>",
             f"<style>{static('leaderboard.css')}</style></head><body><h1>saliency-bench leaderboard</h1>",
             "<p>Click a column header to sort. Scores: mean with its 95% bootstrap interval.</p>"]
    for t in run["tables"]:
        parts += _table(t) + _plots(t)
        parts += _gallery(t, run.get("gallery", {}).get(f"{t['model']} on {t['dataset']}"))
    parts.append("<h2>Settings</h2><ul>" + "".join(f"<li>{e(l)}</li>" for l in settings_lines(run)) + "</ul>")
    parts.append(f"<script>{static('leaderboard.js')}</script></body></html>")
    return "".join(parts)
