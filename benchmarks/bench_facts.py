"""Does retrieval make the characters right? Gold-answer containment on the shipped fact questions, one JSON line.

Baseline, same run, same model: the character's persona prompt and the question alone (what a game gets without
Eterna's index). Eterna: `DialogueEngine.say` (router, NPC-scoped and chapter-filtered retrieval, grounded prompt).
A reply counts as right when it contains the gold short answer (case- and comma-insensitive).

    .venv/bin/python benchmarks/bench_facts.py [--n 40]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.config import EternaConfig  # noqa: E402
from app.dialogue import DialogueEngine  # noqa: E402
from app.prompt import system_prompt  # noqa: E402
from retrieval.fileio import read_jsonl  # noqa: E402


def norm(s: str) -> str:
    return " ".join(s.lower().replace(",", "").split())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--config", default=str(REPO / "configs" / "eterna.yaml"))
    args = ap.parse_args()
    cfg = EternaConfig.load(Path(args.config))
    cfg = cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"sessions": None}),
                                 "memory": cfg.memory.model_copy(update={"turns": 0})})
    engine = DialogueEngine.from_settings(cfg)
    facts = [q for _, q in read_jsonl(REPO / "corpora" / "eval" / "facts.jsonl")]
    step = max(1, len(facts) // args.n)
    sample = facts[::step][: args.n]
    base_ok = rag_ok = found = 0
    speeds = []
    for q in sample:
        npc = engine.cast.get(q["npc"])
        plain = [{"role": "system", "content": system_prompt(npc)}, {"role": "user", "content": q["question"]}]
        base = engine.generator.generate(plain, cfg.generation)
        reply = engine.say(npc.id, q["question"], session="bench", chapter=q["chapter"])
        base_ok += norm(q["answer"]) in norm(base.text)
        rag_ok += norm(q["answer"]) in norm(reply.text)
        found += q["doc"] in {s["doc"] for s in reply.sources}
        if reply.tokens.get("per_second"):
            speeds.append(reply.tokens["per_second"])
    n = len(sample)
    print(json.dumps({"benchmark": "fact_answers", "model": cfg.models.llm, "dtype": cfg.models.dtype, "n": n,
                      "baseline_persona_only_correct": round(base_ok / n, 3),
                      "eterna_rag_correct": round(rag_ok / n, 3),
                      "gold_doc_in_sources": round(found / n, 3),
                      "median_tokens_per_second": statistics.median(speeds) if speeds else None}))


if __name__ == "__main__":
    main()
