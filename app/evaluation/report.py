"""A/B reports: `summary.json`, `report.md` and a self-contained `report.html` (matplotlib plots inlined as PNG)."""

from __future__ import annotations

import base64
import html
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _plots(summary: dict, items: list[dict], answers: dict, names: list[str]) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = {}
    rates = [m for m, meta in summary["metrics"].items() if m in summary["table"] and m != "latency_ms"]
    if rates:
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rates)), 3.6))
        width = 0.8 / len(names)
        for k, v in enumerate(names):
            xs, ys, lo, hi = [], [], [], []
            for j, m in enumerate(rates):
                cell = summary["table"][m].get(v)
                if cell:
                    xs.append(j + k * width)
                    ys.append(cell["mean"])
                    lo.append(cell["mean"] - cell["low"])
                    hi.append(cell["high"] - cell["mean"])
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=v)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(rates))], rates, rotation=30, ha="right")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("mean (95% bootstrap CI)")
        ax.legend(fontsize=7, ncol=min(5, len(names)))
        plots["metrics"] = _png(fig)
    fig, ax = plt.subplots(figsize=(6, 3))
    data = [[a["timings"]["total_ms"] for (v, _), a in answers.items() if v == name and a.get("timings")]
            for name in names]
    if any(data):
        ax.boxplot([d or [0] for d in data], showfliers=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=20)
        ax.set_ylabel("turn latency, ms")
        ax.set_yscale("log")
        plots["latency"] = _png(fig)
    else:
        plt.close(fig)
    for v, conf in summary["router"].items():
        labels = list(conf)
        m = np.array([[conf[g][p] for p in labels] for g in labels])
        fig, ax = plt.subplots(figsize=(3.6, 3.2))
        ax.imshow(m, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=30)
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("routed")
        ax.set_ylabel("labelled")
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, str(m[i, j]), ha="center", va="center", fontsize=8)
        ax.set_title(f"router: {v}", fontsize=9)
        plots[f"router_{v}"] = _png(fig)
        break  # the routed variants share the router: one matrix
    return plots


def _fmt(cell: dict | None) -> str:
    if not cell:
        return "–"
    return f"{cell['mean']:.3f} [{cell['low']:.3f}, {cell['high']:.3f}]"


def _markdown(summary: dict, items: list[dict], answers: dict, cfg) -> str:
    names = summary["run"]["variants"]
    ref = summary["reference"]
    lines = [f"# A/B report: {', '.join(names)}", "",
             f"Config `{summary['run']['config']}`; {summary['run']['items']} items; backend "
             f"{summary['run']['backend']}; seed {summary['run']['seed']}; 95% paired bootstrap intervals "
             f"({cfg.bootstrap} resamples).", "", "## Headline", "",
             "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for m, row in summary["table"].items():
        arrow = "↑" if summary["metrics"][m]["higher_is_better"] else "↓"
        lines.append(f"| {m} {arrow} (n={max(c['n'] for c in row.values())}) | "
                     + " | ".join(_fmt(row.get(v)) for v in names) + " |")
    lines += ["", f"## Differences from `{ref}`", "",
              "Each row: variant minus reference on the items both answered. Binary metrics carry McNemar's exact "
              "p and Holm's correction over every test in this report (many comparisons: read `p_holm`).", "",
              "| metric | variant | diff [95% CI] | p | p_holm | verdict |", "|---|---|---|---|---|---|"]
    for c in summary["comparisons"]:
        sig = c["low"] > 0 or c["high"] < 0
        better = (c["diff"] > 0) == c["higher_is_better"]
        verdict = ("reference better" if better else f"{c['variant']} better") if sig else "no clear difference"
        p = f"{c['p']:.3g}" if "p" in c else "–"
        ph = f"{c['p_holm']:.3g}" if "p_holm" in c else "–"
        lines.append(f"| {c['metric']} | {c['variant']} | {-c['diff']:+.3f} [{-c['high']:+.3f}, {-c['low']:+.3f}] "
                     f"| {p} | {ph} | {verdict} |")
    lines += ["", "## Findings", ""] + [f"- {f}" for f in findings(summary)]
    if summary["per_npc"]:
        keys = sorted({k for d in summary["per_npc"].values() for k in d})
        lines += ["", "## Per character", "", "| npc | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for npc, d in sorted(summary["per_npc"].items()):
            lines.append(f"| {npc} | " + " | ".join(f"{d[k]:.2f}" if k in d else "–" for k in keys) + " |")
    lines += ["", "## Examples", ""]
    shown = 0
    for it in items:
        if shown >= cfg.examples:
            break
        if it["set"] not in ("facts", "style"):
            continue
        shown += 1
        lines.append(f"**{it['key']}** ({it.get('npc')}): {it['text']}")
        for v in names:
            a = answers.get((v, it["key"]), {})
            lines.append(f"- `{v}` [{a.get('route')}]: {a.get('text', a.get('error', ''))[:300]}")
        lines.append("")
    lines += ["## Metrics", ""] + [f"- `{m}`: {meta['help']}" for m, meta in summary["metrics"].items()]
    if not summary.get("voice_classifier"):
        lines.append("- (voice_classifier: no style sets for two or more characters; not measured)")
    return "\n".join(lines) + "\n"


def findings(summary: dict) -> list[str]:
    """Plain sentences on the framework's claims, whichever way the numbers went."""
    t = summary["table"]
    out = []

    def mean(m, v):
        return t.get(m, {}).get(v, {}).get("mean")

    names = summary["run"]["variants"]
    for m in ("contains_gold", "answer_first", "voice_markers", "in_voice", "voice_classifier", "deflects",
              "repeats", "clean_text"):
        row = {v: mean(m, v) for v in names if mean(m, v) is not None}
        if row:
            best = (max if summary["metrics"][m]["higher_is_better"] else min)(row, key=row.get)
            out.append(f"{m}: best `{best}` ({row[best]:.3f}); " + ", ".join(f"`{v}` {x:.3f}" for v, x in row.items()))
    ref = summary["reference"]
    for c in summary["comparisons"]:
        if c["metric"] in ("contains_gold", "voice_markers", "in_voice", "voice_classifier") and c["high"] < 0:
            out.append(f"`{c['variant']}` beats the reference `{ref}` on {c['metric']} "
                       f"(by {-c['diff']:.3f}, CI excludes 0): the reference is not best on everything.")
    return out or ["no metric applied to these items"]


def _html(md: str, plots: dict[str, str]) -> str:
    body = []
    in_table = False
    for line in md.splitlines():
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if set("".join(cells)) <= set("-: "):
                continue
            if not in_table:
                body.append("<table>")
                in_table = True
                body.append("<tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>")
            else:
                body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            body.append("</table>")
            in_table = False
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
            if line[3:] == "Headline":
                body.extend(f'<img alt="{k}" src="data:image/png;base64,{v}">' for k, v in plots.items())
        elif line.startswith("- "):
            body.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        body.append("</table>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
             "font-size:13px}img{max-width:100%;margin:.5em}")
    return (f"<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Eterna A/B report</title>"
            f"<style>{style}</style></head><body>{''.join(body)}</body></html>\n")


def write_reports(out: Path, summary: dict, items: list[dict], answers: dict, cfg) -> None:
    names = summary["run"]["variants"]
    _atomic_text(out / "summary.json", json.dumps(summary, indent=2, ensure_ascii=False))
    _atomic_text(out / "items.json", json.dumps({it["key"]: {k: it.get(k) for k in ("text", "npc", "set", "answers",
                                                                                        "doc", "chapter", "label")}
                                                 for it in items}, indent=1, ensure_ascii=False))
    md = _markdown(summary, items, answers, cfg)
    _atomic_text(out / "report.md", md)
    _atomic_text(out / "report.html", _html(md, _plots(summary, items, answers, names)))
