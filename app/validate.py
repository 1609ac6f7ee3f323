"""`eterna validate`: check the configs and every shipped corpus file against the code (torchtune-style).

Returns counts per file group; the first problem raises a typed error naming the file and line.
"""

from __future__ import annotations

from pathlib import Path

from app.config import Cast, EternaConfig
from app.demo import load_scene
from app.router import LABELS, load_seeds
from retrieval.corpus import load_corpus
from retrieval.errors import CorpusError
from retrieval.fileio import read_jsonl
from retrieval.types import Scope
from tuning.data import load_chat_examples, load_preferences


def validate_facts(path: Path, docs: dict, cast: Cast) -> int:
    n = 0
    for lineno, q in read_jsonl(path, ("id", "question", "answer", "doc", "chapter", "npc")):
        where = f"{path}:{lineno}"
        doc = docs.get(q["doc"])
        if doc is None:
            raise CorpusError(f"{where}: doc {q['doc']!r} is not in the lore corpus")
        if q["chapter"] != doc.chapter:
            raise CorpusError(f"{where}: chapter {q['chapter']} but {q['doc']} is chapter {doc.chapter}")
        if str(q["answer"]).lower() not in doc.body.lower():
            raise CorpusError(f"{where}: answer {q['answer']!r} does not occur in {doc.path}")
        npc = cast.get(q["npc"])
        if not Scope(npc=npc.id, kinds=npc.kinds()).allows(doc):  # a Document has a chunk's visibility fields
            raise CorpusError(f"{where}: npc {npc.id!r} cannot see {q['doc']} (npc_scope/knows)")
        n += 1
    return n


def validate_project(cfg: EternaConfig) -> dict:
    corpora = cfg.paths.corpus.parent
    cast = Cast.load(cfg.paths.npcs)
    report: dict[str, object] = {"npcs": len(cast.npcs)}
    docs = {d.id: d for d in load_corpus(cfg.paths.corpus)}
    report["lore_documents"] = len(docs)
    report["lore_chapters"] = {c: sum(d.chapter == c for d in docs.values()) for c in sorted(
        {d.chapter for d in docs.values()})}
    for kind, loader in (("style", load_chat_examples), ("preferences", load_preferences)):
        for path in sorted((corpora / kind).glob("*.jsonl")):
            cast.get(path.stem)  # a file per known NPC
            report[f"{kind}/{path.stem}"] = len(loader(path))
    facts = sorted((corpora / "eval").glob("facts*.jsonl"))
    report["eval_facts"] = sum(validate_facts(p, docs, cast) for p in facts)
    router_eval = corpora / "eval" / "router.jsonl"
    if router_eval.is_file():
        labels = [lbl for _, lbl in load_seeds(router_eval)]
        report["eval_router"] = {lbl: labels.count(lbl) for lbl in LABELS}
    report["router_seeds"] = len(load_seeds(cfg.paths.router_seeds))
    scenes = corpora / "scenes"
    for path in sorted(scenes.glob("*.jsonl")) if scenes.is_dir() else []:
        lines = load_scene(path)
        for line in lines:
            cast.get(line["npc"])
        report[f"scene/{path.stem}"] = len(lines)
    return report
