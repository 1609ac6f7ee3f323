"""Two retrieval sets assembled from the public data in ../shared/data, written as BEIR folders (corpus.jsonl,
queries.jsonl, qrels/dev.tsv and qrels/test.tsv) so `eterna eval retrieval --beir DIR` and bench_hybrid.py score
them like SciFact. Queries alternate between the `dev` split (for choosing the hybrid weight) and the `test` split
(for reporting).

- `alpaca-answers` (open-book QA as answer retrieval, from LLaMA-Factory's Alpaca demo, Apache-2.0): the query is an
  instruction (with its input), the passages are all 999 answers, the relevant one is its own answer.
- `persona-grounding` (ConvAI2 / PersonaChat validation): the query is a character's line of 8 or more words, the
  passages are the distinct personas (4-5 first-person facts each), the relevant one is the persona that was
  speaking: the task of finding the facts a character's line stands on.

    .venv/bin/python benchmarks/qa_sets.py OUT_DIR
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _write(folder: Path, corpus: list[dict], queries: list[dict], qrels: list[tuple[str, str]]) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus), encoding="utf-8")
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    for split, rows in (("dev", qrels[0::2]), ("test", qrels[1::2])):  # alternate queries: tune on dev only
        (folder / "qrels" / f"{split}.tsv").write_text(
            "query-id\tcorpus-id\tscore\n" + "".join(f"{q}\t{d}\t1\n" for q, d in rows), encoding="utf-8")
    return folder


def alpaca_answers(out: Path, src: Path = DATA / "instruction" / "alpaca_en_demo.json") -> Path:
    rows = json.loads(src.read_text(encoding="utf-8"))
    corpus, queries, qrels = [], [], []
    for i, r in enumerate(rows):
        if not r["output"].strip():
            continue
        corpus.append({"_id": f"a{i}", "title": "", "text": r["output"]})
        queries.append({"_id": f"q{i}", "text": f"{r['instruction']} {r['input']}".strip()})
        qrels.append((f"q{i}", f"a{i}"))
    return _write(out / "alpaca-answers", corpus, queries, qrels)


def persona_grounding(out: Path, src: Path = DATA / "personachat" / "valid_self_original_no_cands.txt",
                      max_queries: int = 2000) -> Path:
    dialogues, persona, lines = [], [], []
    for raw in src.read_text(encoding="utf-8").splitlines():
        num, _, rest = raw.partition(" ")
        if num == "1" and (persona or lines):
            dialogues.append((persona, lines))
            persona, lines = [], []
        if rest.startswith("your persona:"):
            persona.append(rest[len("your persona:"):].strip())
        elif "\t" in rest:
            lines.append(rest.split("\t")[1].strip())
    dialogues.append((persona, lines))
    ids: dict[str, str] = {}
    corpus, queries, qrels = [], [], []
    for persona, lines in dialogues:
        text = " ".join(persona)
        pid = ids.setdefault(text, "p" + hashlib.sha256(text.encode()).hexdigest()[:10])
        if len(ids) > len(corpus):
            corpus.append({"_id": pid, "title": "", "text": text})
        for line in lines:
            if len(line.split()) >= 8 and len(queries) < max_queries:
                qid = f"u{len(queries)}"
                queries.append({"_id": qid, "text": line})
                qrels.append((qid, pid))
    return _write(out / "persona-grounding", corpus, queries, qrels)


SETS = {"alpaca-answers": alpaca_answers, "persona-grounding": persona_grounding}

if __name__ == "__main__":
    for name, make in SETS.items():
        print(make(Path(sys.argv[1])))
