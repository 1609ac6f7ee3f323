"""Blind human review of an A/B run.

    eterna eval review --run DIR --out PAGE.html [--a VARIANT --b VARIANT] [--limit N]
    eterna eval review --import CHOICES.json [--pairs-out DIR]

The page is static and self-contained: per prompt, two answers in random order with no variant names, and Left /
Right / Tie buttons plus a note; "Download choices" saves a JSON file. The key (which side was which variant) stays
in `DIR/review_key.json`, never in the page. Importing un-blinds the choices, reports win rates with bootstrap
intervals, and writes the preferences as DPO pairs `{"prompt", "chosen", "rejected"}`, one file per character, in the
layout of `corpora/<world>/preferences/`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

from app.evaluation.ab import read_answers
from app.evaluation.report import _atomic_text
from app.evaluation.stats import mean_ci
from retrieval.errors import EternaError


def _answers(run: Path) -> dict[tuple[str, str], dict]:
    path = Path(run) / "answers.jsonl"
    if not path.is_file():
        raise EternaError(f"{path}: not found; run `eterna eval ab --out {run}` first")
    return read_answers(path)


def write_review_page(run: Path, out: Path, a: str | None = None, b: str | None = None, limit: int | None = None,
                      seed: int = 0) -> dict:
    run = Path(run)
    answers = _answers(run)
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8")) if (run / "summary.json").is_file() \
        else {}
    variants = sorted({v for v, _ in answers})
    b = b or summary.get("reference") or variants[-1]
    a = a or next(v for v in variants if v != b)
    for v in (a, b):
        if v not in variants:
            raise EternaError(f"variant {v!r} is not in {run}/answers.jsonl ({', '.join(variants)})")
    prompts = {}
    texts_path = run / "items.json"
    if texts_path.is_file():
        prompts = json.loads(texts_path.read_text(encoding="utf-8"))
    keys = sorted({k for v, k in answers if v == a} & {k for v, k in answers if v == b})
    keys = [k for k in keys if k.split(":")[0] in ("facts", "style") and not answers[(a, k)].get("error")
            and not answers[(b, k)].get("error")]
    rng = random.Random(seed)
    rng.shuffle(keys)
    keys = keys[:limit] if limit else keys
    pairs, key = [], {}
    for n, k in enumerate(keys):
        left_is_a = rng.random() < 0.5
        left, right = (answers[(a, k)], answers[(b, k)]) if left_is_a else (answers[(b, k)], answers[(a, k)])
        pid = f"q{n:04d}"
        pairs.append({"id": pid, "prompt": prompts.get(k, {}).get("text", ""),
                      "left": left["text"] or "(no reply)", "right": right["text"] or "(no reply)"})
        key[pid] = {"item": k, "npc": answers[(a, k)].get("npc"), "left": left["variant"], "right": right["variant"]}
    if not pairs:
        raise EternaError(f"no fact or style item was answered by both {a!r} and {b!r} in {run}")
    _atomic_text(run / "review_key.json", json.dumps({"a": a, "b": b, "pairs": key}, indent=1, ensure_ascii=False))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _atomic_text(out, _page(pairs, str(run.resolve())))
    return {"pairs": len(pairs), "page": str(out), "key": str(run / "review_key.json")}


def _page(pairs: list[dict], run: str) -> str:
    data = json.dumps({"run": run, "pairs": pairs}, ensure_ascii=False).replace("</", "<\\/")
    return """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Eterna blind review</title><style>
body{font-family:sans-serif;max-width:900px;margin:2em auto;padding:0 1em}.pair{border:1px solid #ccc;
padding:.8em;margin:1em 0}.ans{display:flex;gap:1em}.ans div{flex:1;background:#f6f6f6;padding:.5em;
white-space:pre-wrap}.chosen{outline:3px solid #2a7}button{margin:.3em}textarea{width:100%}
</style></head><body><h1>Blind review</h1><p>For each line, pick the better reply (or a tie). The replies are in
random order and their systems are hidden. Then press <b>Download choices</b> and send the file back.</p>
<div id="pairs"></div><p id="count"></p><button id="download">Download choices</button>
<script id="data" type="application/json">""" + data + """</script><script>
const data = JSON.parse(document.getElementById('data').textContent);
const choices = {};
const root = document.getElementById('pairs');
function esc(s){const d=document.createElement('div');d.textContent=s;return d.innerHTML;}
function update(){document.getElementById('count').textContent =
  Object.keys(choices).length + ' of ' + data.pairs.length + ' judged';}
data.pairs.forEach(p => {
  const el = document.createElement('div'); el.className = 'pair'; el.id = p.id;
  el.innerHTML = '<p><b>Player:</b> ' + esc(p.prompt) + '</p><div class="ans"><div class="left">' + esc(p.left) +
    '</div><div class="right">' + esc(p.right) + '</div></div>' +
    '<button data-c="left">Left is better</button><button data-c="tie">Tie</button>' +
    '<button data-c="right">Right is better</button><textarea placeholder="note (optional)"></textarea>';
  el.querySelectorAll('button').forEach(b => b.addEventListener('click', () => {
    choices[p.id] = {id: p.id, choice: b.dataset.c, note: el.querySelector('textarea').value};
    el.querySelectorAll('.ans div').forEach(d => d.classList.remove('chosen'));
    if (b.dataset.c !== 'tie') el.querySelector('.' + b.dataset.c).classList.add('chosen');
    update();
  }));
  el.querySelector('textarea').addEventListener('input', e => {
    if (choices[p.id]) choices[p.id].note = e.target.value; });
  root.appendChild(el);
});
update();
document.getElementById('download').addEventListener('click', () => {
  const blob = new Blob([JSON.stringify({run: data.run, choices: Object.values(choices)}, null, 1)],
                        {type: 'application/json'});
  const a = document.createElement('a'); a.href = URL.createObjectURL(blob); a.download = 'choices.json';
  document.body.appendChild(a); a.click(); a.remove();
});
</script></body></html>
"""


def import_choices(path: Path, pairs_out: Path | None = None, seed: int = 0) -> dict:
    path = Path(path)
    try:
        got = json.loads(path.read_text(encoding="utf-8"))
        run = Path(got["run"])
        choices = got["choices"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise EternaError(f"{path}: not a choices file from the review page ({e})") from None
    key_path = run / "review_key.json"
    if not key_path.is_file():
        raise EternaError(f"{key_path}: the review key is missing; the page must come from `eterna eval review --run`")
    key = json.loads(key_path.read_text(encoding="utf-8"))
    answers = _answers(run)
    a, b = key["a"], key["b"]
    wins = []  # 1: a better, 0: b better, 0.5: tie
    prefs: dict[str, list[dict]] = {}
    for c in choices:
        k = key["pairs"].get(c.get("id"))
        if k is None or c.get("choice") not in ("left", "right", "tie"):
            raise EternaError(f"{path}: choice {c!r} does not match the review key of {run}")
        if c["choice"] == "tie":
            wins.append(0.5)
            continue
        winner = k[c["choice"]]
        loser = k["right" if c["choice"] == "left" else "left"]
        wins.append(1.0 if winner == a else 0.0)
        prefs.setdefault(k["npc"] or "all", []).append({
            "prompt": answers[(winner, k["item"])].get("prompt") or _prompt(run, k["item"]),
            "chosen": answers[(winner, k["item"])]["text"], "rejected": answers[(loser, k["item"])]["text"],
            "source": f"review of {run.name}: {winner} over {loser}", "note": c.get("note", "")})
    if not wins:
        raise EternaError(f"{path}: no choices")
    mean, lo, hi = mean_ci(np.array(wins), 2000, seed)
    report = {"a": a, "b": b, "judged": len(wins), "ties": wins.count(0.5),
              f"win_rate_{a}": round(mean, 4), "low": round(lo, 4), "high": round(hi, 4)}
    if pairs_out is not None:
        pairs_out = Path(pairs_out)
        pairs_out.mkdir(parents=True, exist_ok=True)
        for npc, rows in prefs.items():
            _atomic_text(pairs_out / f"{npc}.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        report["pairs_written"] = {npc: len(rows) for npc, rows in prefs.items()}
    return report


def _prompt(run: Path, item_key: str) -> str:
    items = run / "items.json"
    if items.is_file():
        return json.loads(items.read_text(encoding="utf-8")).get(item_key, {}).get("text", "")
    return ""
