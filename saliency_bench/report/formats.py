"""The leaderboard as Markdown, CSV and JSON (the HTML page is :mod:`.html`)."""
from __future__ import annotations

import csv
import io
import json

from .tables import (cells, coverage, coverage_notes, mark_legend, method_label, protocol_notes, settings_lines,
                     subset_notes, table_notes, used_columns)


def to_markdown(run: dict) -> str:
    out = ["# saliency-bench leaderboard", ""]
    for t in run["tables"]:
        cols = used_columns(t)
        out += [f"## {t['model']} on {t['dataset']}", ""]
        out.append("| Method | " + " | ".join(c["title"] for c in cols) + " | Coverage |")
        out.append("|---|" + "---|" * len(cols) + "---|")
        for r, row in zip(t["rows"], cells(t, cols)):
            out.append(f"| {method_label(t, r['method'])} | " + " | ".join(c.text() for c in row) + f" | {coverage(r)} |")
        fb = t.get("model_forward_backward")
        if fb:
            out += ["", f"Model forward+backward: {fb['images_per_s']:.1f} images/s at batch {fb['batch_size']}."]
        marks = mark_legend(t, cols)
        out += [""] + ([f"{marks}."] if marks else []) + [f"{n}." for n in subset_notes(t)]
        out += [f"alpha*: {why}." for why in table_notes(t)]
        why = coverage_notes(t)
        if why:
            out += ["", "Coverage:", ""] + [f"- {w}" for w in why]
        notes = protocol_notes(t, cols)
        if notes:
            out += ["", "Protocols:", ""] + [f"- {n}" for n in notes]
        out.append("")
    out += ["## Settings", ""] + [f"- {line}" for line in settings_lines(run)] + [""]
    return "\n".join(out)


def to_csv(run: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    header = ["model", "dataset", "method"]
    columns = run["columns"]
    for c in columns:
        k = c["key"]
        header += [k, f"{k}_ci_low", f"{k}_ci_high", f"{k}_note"]
    header += ["scored", "failed", "not_evaluable", "total", "first_failure"]
    w.writerow(header)
    for t in run["tables"]:
        for r in t["rows"]:
            row = [t["model"], t["dataset"], r["method"]]
            for c in columns:
                m = r.get(c["key"]) or {}
                ci = m.get("ci") or [None, None]
                row += [m.get("value"), ci[0], ci[1], m.get("note", "")]
            cov = r.get("coverage") or {}
            first = (cov.get("failures") or [{}])[0]
            row += [cov.get("scored"), cov.get("failed"), cov.get("not_evaluable"), cov.get("total"),
                    f"{first['id']}: {first['reason']}" if first.get("reason") else ""]
            w.writerow(row)
    return buf.getvalue()


def to_json(run: dict) -> str:
    data = {k: v for k, v in run.items() if k != "gallery"}
    return json.dumps(data, indent=2, sort_keys=True, default=str)
