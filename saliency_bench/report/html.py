"""The leaderboard as one self-contained HTML page: sortable tables (a column header click sorts),
the score-against-speed plots, the per-step curves (:mod:`.curves`), the gallery; its style and script are ``static/leaderboard.css``
and ``static/leaderboard.js``, inlined so the page needs no network and no other file."""
from __future__ import annotations

import base64
import html
from importlib.resources import files

from .curves import curves_html
from .plots import speed_columns, speed_plot_svg
from .tables import (alpha, cells, coverage, coverage_notes, mark_legend, mark_text, method_label, protocol_notes,
                     settings_lines, subset_notes, table_notes, used_columns)


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
        base = " class='baseline'" if r["method"] in set(t.get("baselines") or ()) else ""
        parts.append(f"<tr{base}><td data-v='{e(r['method'])}'>{e(method_label(t, r['method']))}</td>")
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
            mk = f" <span class='mark'>{mark_text(c.marks)}</span>" if c.marks else ""
            parts.append(f"<td data-v='{v}'{cls} title='{e(m.get('note', ''))}'>{v:.3g}{ci_s}{note_s}{mk}</td>")
        cov = r.get("coverage") or {}
        reasons = "; ".join(f"{f['id']}: {f['reason']}" for f in cov.get("failures", [])[:10])
        parts.append(f"<td data-v='{cov.get('scored', '')}' title='{e(reasons)}'>{e(coverage(r))}</td></tr>")
    parts.append("</tbody></table>")
    fb = t.get("model_forward_backward")
    if fb:
        parts.append(f"<p>Model forward+backward: {fb['images_per_s']:.1f} images/s at batch {fb['batch_size']}.</p>")
    marks = mark_legend(t, cols)
    parts += ([f"<p class='marks'>{e(marks)}.</p>"] if marks else []) + [f"<p>{e(n)}.</p>" for n in subset_notes(t)]
    parts += [f"<p>alpha*: {e(why)}.</p>" for why in table_notes(t)]
    parts += _matrices(t, cols)
    why = coverage_notes(t)
    if why:
        parts.append("<details><summary>Coverage</summary><ul>"
                     + "".join(f"<li>{e(w)}</li>" for w in why) + "</ul></details>")
    notes = protocol_notes(t, cols)
    if notes:
        parts.append("<details><summary>Protocols</summary><ul>"
                     + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul></details>")
    return parts


def _matrices(t: dict, cols: list[dict]) -> list[str]:
    """Per column, the paired comparisons of every two methods: row minus column on the samples
    both scored, its interval, the Holm-adjusted p; bold where significant at 5%."""
    from ..compare import pairwise_matrix

    e = html.escape
    out = []
    for c in cols:
        mat = pairwise_matrix(t, c["key"])
        if mat is None:
            continue
        names, cells_ = mat
        comp = t["comparisons"][c["key"]]
        rows = ["<tr><th>row − column</th>" + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>"]
        for a, line in zip(names, cells_):
            tds = []
            for p in line:
                if p is None:
                    tds.append("<td>–</td>")
                    continue
                sig = " class='sig'" if p["p_holm"] < comp.get("level", 0.05) else ""
                ci = p.get("ci")
                ci_s = f" <span class='ci'>[{ci[0]:.3g}, {ci[1]:.3g}]</span>" if ci else ""
                tds.append(f"<td{sig} title='n={p['n']}, p={p['p']:.3g}, "
                           f"Holm {p['p_holm']:.3g}'>{p['diff']:+.3g}{ci_s}<br><span class='ci'>p={p['p_holm']:.2g}"
                           f"</span></td>")
            rows.append(f"<tr><th>{e(a)}</th>" + "".join(tds) + "</tr>")
        out.append(f"<details class='pairs' data-column='{e(c['key'])}'><summary>Pairwise: {e(c['title'])}</summary>"
                   f"<p>{e(comp.get('test', ''))}.</p><table class='pairs'>" + "".join(rows) + "</table></details>")
    return out


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
        parts += _table(t) + _plots(t) + curves_html(t)
        parts += _gallery(t, run.get("gallery", {}).get(f"{t['model']} on {t['dataset']}"))
    parts.append("<h2>Settings</h2><ul>" + "".join(f"<li>{e(l)}</li>" for l in settings_lines(run)) + "</ul>")
    parts.append(f"<script>{static('leaderboard.js')}</script></body></html>")
    return "".join(parts)
