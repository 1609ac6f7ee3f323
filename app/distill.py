"""`eterna train distill`: a character's training dialogue from its own lore, the teacher's replies, and the checks
of the student against the teacher (speed, voice) on held-out prompts.

    manifest = distill_npc(cfg, cast, "tome", Path("students/tome"), DistillRecipe(layers=3), chapter=1)

Prompts are built deterministically: templated questions about each lore chunk the character may know (read from
the corpus with the character's Scope, up to `chapter`: a student may repeat what it learned, so later chapters
would be spoilers), alternating with generic in-character lines. Each prompt is rendered exactly as the engine
renders a turn (`app.prompt.build_messages`: persona, route instructions, the chunk's sentences as facts on
`fact`/`both` turns), and the teacher (the base model with the character's adapter, as the engine serves it)
replies greedily (or sampled) with the engine's decoding for that route. Training itself is tuning/distill.py.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from app.backends.batched import BatchedBackend
from app.backends.decoding import Decoding
from app.backends.transformers import Generator
from app.config import Cast, EternaConfig, NpcSpec
from app.grounding import Evidence, split_sentences
from app.prompt import build_messages, system_prompt
from retrieval.chunking import chunk_document
from retrieval.corpus import load_corpus
from retrieval.errors import ConfigError, CorpusError
from retrieval.fileio import sha256_bytes
from retrieval.types import Chunk
from tuning.base import prepare_model
from tuning.distill import DistillRecipe, train_student

GENERIC_LINES = (
    "Hello there.", "Who are you?", "What do you remember?", "Tell me something only you would know.",
    "Are you awake?", "I am lost. Can you help me?", "Thank you for your help.", "Why should I trust you?",
    "What is your oldest memory?", "Goodbye for now.",
)
_LOWER_OPENERS = {"The", "A", "An", "It", "Its", "This", "These", "Those", "There", "Each", "Every"}


def lore_chunks(cfg: EternaConfig, cast: Cast, npc: NpcSpec, chapter: int | None) -> list[Chunk]:
    docs = load_corpus(cfg.paths.corpus, cfg.world.kinds, {n.id for n in cast.npcs})
    scope = npc.scope(chapter)
    r = cfg.retrieval
    chunks = [c for d in docs if scope.allows(d) for c in chunk_document(d, r.chunk_words, r.overlap_words)]
    if not chunks:
        raise CorpusError(f"{cfg.paths.corpus}: {npc.id} may know no lore up to chapter {chapter}; check its "
                          "`knows` in the npcs file, the documents' npc_scope, or pass a later --chapter")
    return chunks


def _as_question(sentence: str) -> str:
    first = sentence.split(" ", 1)[0]
    body = sentence[0].lower() + sentence[1:] if first in _LOWER_OPENERS else sentence
    return f"Is it true that {body.rstrip('.!')}?"


def build_prompts(chunks: list[Chunk], n: int) -> list[tuple[str, str, list[Evidence]]]:
    """Up to n (route, player line, evidence) prompts: lore questions round-robin over the chunks, alternating with
    generic lines. Deterministic; no prompt repeats."""
    per_chunk = []
    for c in chunks:
        sents = split_sentences(c.text) or [c.text]
        ev = [Evidence(s, c.id, c.doc, c.title, 1.0) for s in sents[:3]]
        items = [("fact", f"What do you know of {c.title}?", ev),
                 ("both", f"In your own voice, tell me about {c.heading or c.title}.", ev)]
        items += [("fact", _as_question(s), [e, *[x for x in ev if x is not e]]) for s, e in zip(sents, ev)]
        per_chunk.append(items)
    lore = [items[i] for i in range(max(map(len, per_chunk))) for items in per_chunk if i < len(items)]
    generic = [("style", line, []) for line in GENERIC_LINES]
    mixed = []
    for i in range(max(len(lore), len(generic))):
        mixed += lore[i:i + 1] + generic[i:i + 1]
    return mixed[:n]


def _decoding(cfg: EternaConfig, route: str, evidence: list[Evidence], recipe: DistillRecipe, seed: int) -> Decoding:
    d = Decoding.from_config(cfg.generation)
    d = replace(d, max_new_tokens=recipe.max_new_tokens or cfg.generation.max_new_tokens,
                temperature=recipe.teacher_temperature, seed=seed)
    if route in ("fact", "both"):  # the engine's grounded decoding
        g = cfg.grounding
        d = replace(d, repetition_penalty=g.repetition_penalty, penalty_scope=g.penalty_over, copy_bias=g.copy_bias,
                    copy_text=" ".join(e.text for e in evidence))
    return d


def _rate(texts: list[str], npc: NpcSpec) -> float | None:
    return round(sum(npc.markers.match(t) for t in texts) / len(texts), 4) if npc.markers and texts else None


def distill_npc(cfg: EternaConfig, cast: Cast, npc_id: str, out: Path, recipe: DistillRecipe, *,
                chapter: int | None = 1, log: bool = False) -> dict:
    """Generate the dialogues, train the student, measure it against the teacher; returns the manifest."""
    npc = cast.get(npc_id)
    chunks = lore_chunks(cfg, cast, npc, chapter)
    prompts = build_prompts(chunks, recipe.dialogues)
    base = prepare_model(cfg.models.llm, cfg.models.cache_dir)
    n_layers = json.loads((base / "config.json").read_text(encoding="utf-8")).get("num_hidden_layers")
    if n_layers is not None and recipe.layers >= n_layers:  # fail before generating anything
        raise ConfigError(f"--layers {recipe.layers}: a student has 1 to {n_layers - 1} layers (the teacher has "
                          f"{n_layers}); pass a smaller --layers")
    batched = BatchedBackend(base, cfg.models.dtype, max_batch=recipe.teacher_batch, window_ms=50)
    adapter = None
    if npc.adapter is not None:
        batched.add_adapter(npc.id, npc.adapter)
        adapter = npc.id
    jobs = []
    for i, (route, line, evidence) in enumerate(prompts):
        messages, _ = build_messages(npc, route, evidence, [], line, lambda m: 0, 1, world=cfg.world,
                                     prompts=cfg.prompts)
        jobs.append((route, messages, _decoding(cfg, route, evidence, recipe, recipe.seed + i)))
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=recipe.teacher_batch) as pool:  # concurrent rows share decoding steps
        futures = [pool.submit(batched.generate, m, d, adapter) for _, m, d in jobs]
        gens = []
        for i, f in enumerate(futures):
            gens.append(f.result())
            if log:
                print(f"dialogue {i + 1}/{len(jobs)} [{jobs[i][0]}] {gens[-1].new_tokens} tokens", file=sys.stderr,
                      flush=True)
    generation_s = time.perf_counter() - t0
    batched.close()  # frees the teacher's bf16 copy before training
    del batched
    every = max(2, round(1 / recipe.held_out))
    train, held_out, held_prompts, teacher_text, kept = [], [], [], [], 0
    for (_, messages, decoding), gen in zip(jobs, gens):
        if not gen.text.strip():
            continue  # nothing to learn from an empty reply
        example = [*messages, {"role": "assistant", "content": gen.text}]
        if (kept := kept + 1) % every == 0:
            held_out.append(example)
            held_prompts.append((messages, decoding))
            teacher_text.append(gen.text)
        else:
            train.append(example)

    def evaluate(staged: Path) -> dict:
        """Voice on every held-out prompt; speed one reply at a time on the same transformers runtime, teacher
        (base + adapter) and student on the same prompts."""
        # decoded as the engine will serve it (student_backend reads the same setting from the manifest)
        student = Generator(staged, cfg.models.dtype, no_repeat_ngram=recipe.no_repeat_ngram)
        student.generate([{"role": "user", "content": "Hello."}], Decoding(max_new_tokens=4))  # warm-up
        student_gen = [student.generate(m, d) for m, d in held_prompts]
        timed = held_prompts[:recipe.speed_prompts]
        teacher = Generator(base, cfg.models.dtype)
        if adapter is not None:
            teacher.add_adapter(adapter, npc.adapter)
        teacher.generate([{"role": "user", "content": "Hello."}], Decoding(max_new_tokens=4), adapter)  # warm-up
        teacher_gen = [teacher.generate(m, d, adapter) for m, d in timed]
        del teacher
        t_tps = sum(g.new_tokens for g in teacher_gen) / max(sum(g.seconds for g in teacher_gen), 1e-9)
        s_timed = student_gen[:len(timed)]
        s_tps = sum(g.new_tokens for g in s_timed) / max(sum(g.seconds for g in s_timed), 1e-9)
        empty = sum(not g.text.strip() for g in student_gen)
        return {
            "speed": {"teacher_tokens_per_s": round(t_tps, 1), "student_tokens_per_s": round(s_tps, 1),
                      "ratio": round(s_tps / t_tps, 2), "prompts": len(timed), "dtype": cfg.models.dtype},
            "voice_markers": {"teacher": _rate(teacher_text, npc), "student": _rate([g.text for g in student_gen], npc),
                              "prompts": len(held_prompts)},
            "student_empty_replies": empty,
            "teacher_generation_s": round(generation_s, 1),
            "samples": [{"prompt": m[-1]["content"], "teacher": t, "student": s.text}
                        for (m, _), t, s in list(zip(held_prompts, teacher_text, student_gen))[:3]],
        }

    lore_key = sha256_bytes("\n".join(f"{c.id}\t{c.hash}" for c in chunks).encode())[:16]
    data = {"lore_sha256": lore_key, "chunks": len(chunks), "docs": len({c.doc for c in chunks}),
            "chapter": chapter, "prompts": len(prompts), "corpus": str(cfg.paths.corpus)}
    return train_student(base, npc.adapter, train, held_out, out, recipe, npc=npc.id,
                         system=system_prompt(npc, cfg.world, cfg.prompts), base_spec=cfg.models.llm, data=data,
                         evaluate=evaluate, log=log)
