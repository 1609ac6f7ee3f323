"""`eterna train reader`: the answer reader (tuning/reader.py), a cross-encoder that picks the evidence sentence
holding the answer, from worlds' fact questions: each question goes through the world's engine as a turn, and its
best evidence sentences, as the selection ranks them, are the candidates; those that hold a gold answer are the
positives. Serve it with `grounding.answer_order: reader` and `grounding.reader: FOLDER`.

Train only on development worlds: a world whose facts train the reader can no longer measure it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.recipes import register
from retrieval.errors import EternaError
from tuning.reader import ReaderRecipe

CANDIDATES = 5  # evidence sentences a question is read against (the selection's best; a turn reads its own)


def options(sp) -> None:
    sp.add_argument("--worlds", nargs="+", metavar="CONFIG",
                    help="world configs whose fact questions train (default: --config's world)")
    sp.add_argument("--facts", nargs="+", default=["facts.jsonl"], metavar="NAME",
                    help="the fact questions' files in each world's paths.eval (default facts.jsonl); a world "
                         "that lacks one of several is read from the others, a question asked twice counts once")
    sp.add_argument("--out", help="reader folder (default: paths.adapters/reader)")


def question_rows(config_path: Path, facts: str) -> list[dict]:
    """One row per fact question a world answers by extraction: {question, candidates: [[title, sentence]], gold}."""
    from app.config import EternaConfig
    from app.dialogue import DialogueEngine
    from app.evaluation.facts import contains_answer, load_fact_items
    from retrieval.gates import State

    cfg = EternaConfig.load(Path(config_path))
    if cfg.paths.eval is None or not (cfg.paths.eval / facts).is_file():
        raise EternaError(f"{config_path}: no fact questions at paths.eval/{facts}; give a world with an eval "
                          "folder, or --facts NAME")
    g = cfg.grounding.model_copy(update={"evidence_sentences": 8, "extract_sentences": CANDIDATES,
                                         "answer": "extract", "answer_both": "extract", "answer_order": "rank",
                                         "max_words": None})
    engine = DialogueEngine.from_settings(cfg.model_copy(update={"grounding": g}))
    from app.grounding import sentences_with_context

    docs = {c.doc: c for c in engine.index.chunks}
    titles = {c.id: c.title for c in engine.index.chunks}
    before = {}  # (chunk, sentence) -> the sentence before it in the chunk, as EvidenceSelector.select reads it
    for c in engine.index.chunks:
        for sentence, prev in sentences_with_context(c.text):
            before.setdefault((c.id, sentence), prev)
    rows = []
    for i, it in enumerate(load_fact_items(cfg.paths.eval / facts)):
        npc, state = engine.cast.get(it["npc"]), State.of(it.get("state"))
        if it.get("doc") not in docs or not npc.scope(it["chapter"], state).allows(docs[it["doc"]]):
            continue  # the character may not know it: an "I do not know" turn reads nothing
        reply = engine.say(npc.id, it["question"], session=f"reader-{i}", chapter=it["chapter"], state=state)
        if reply.grounding.get("answer") != "extracted":
            continue
        ev = reply.grounding["evidence"]
        rows.append({"world": cfg.world.name, "question": it["question"],
                     "candidates": [[titles.get(e["chunk"], ""), e["text"], before.get((e["chunk"], e["text"]), "")]
                                    for e in ev],
                     "gold": [contains_answer(e["text"], it["answers"]) for e in ev]})
    return rows


def world_rows(config_path: Path, files: list[str]) -> list[dict]:
    """question_rows over several facts files of one world: the files it has (at least one), each question once
    (gated files ask one question under several states; only those whose gate is open are read)."""
    from app.config import EternaConfig

    if len(files) == 1:
        return question_rows(config_path, files[0])
    cfg = EternaConfig.load(Path(config_path))
    have = [f for f in files if cfg.paths.eval is not None and (cfg.paths.eval / f).is_file()]
    if not have:
        raise EternaError(f"{config_path}: none of {', '.join(files)} in paths.eval; give a world with an eval "
                          "folder, or other --facts names")
    rows, seen = [], set()
    for f in have:
        for r in question_rows(config_path, f):
            key = " ".join(r["question"].lower().split())
            if key not in seen:
                seen.add(key)
                rows.append(r)
    return rows


def train(cfg, args, recipe: ReaderRecipe) -> tuple[dict, str]:
    from app.cli.common import main_rank
    from retrieval.embeddings import resolve_embedder
    from tuning.reader import train_reader

    worlds = [Path(w) for w in args.worlds] if args.worlds else [Path(args.config)]
    rows = [r for w in worlds for r in world_rows(w, args.facts)]
    out = Path(args.out) if args.out else cfg.paths.adapters / "reader"
    spec = cfg.models.embedder
    sources = {"worlds": [w.name for w in worlds], "facts": args.facts}
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if main_rank() else (lambda msg: None)
    manifest = train_reader(rows, resolve_embedder(spec), out, recipe, base_spec=spec, sources=sources, log=log)
    d = manifest["data"]
    return ({"reader": str(out), **manifest},
            f"answer reader -> {out}: {d['trained_on']} of {d['questions']} questions trained on, loss "
            f"{manifest['metrics']['epoch_loss']}, {manifest['metrics']['seconds']} s. Set `grounding: "
            f"{{answer_order: reader, reader: {out}}}` in the config to use it.")


register("reader", ReaderRecipe, train, "the answer reader: which evidence sentence holds the answer",
         options=options, flags={"learning_rate": ("--lr", "--learning-rate")})
