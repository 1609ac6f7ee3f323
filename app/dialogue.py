"""The public Python API.

    engine = DialogueEngine.from_config("configs/eterna.yaml")
    reply = engine.say("keeper", "Who founded this place?", session="p1", chapter=1)
    reply.text, reply.route, reply.sources, reply.timings

One engine holds one base model, the cast's adapters, the embedder, the live index generation and the memory.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from app.config import Cast, EternaConfig, NpcSpec
from app.cues import Cues
from app.grounding import Evidence, EvidenceSelector, wrap_in_voice
from app.guard import check_chapter, check_session, clean_player_text, injection_flags
from app.memory import SessionMemory
from app.prompt import build_messages
from app.router import Router, load_seeds
from app.router_data import synthesise
from app.runtime import Decoding, Generator
from retrieval.embeddings import SentenceTransformerEmbedder
from retrieval.index import LoreIndex
from retrieval.types import Scope
from tuning.base import prepare_model


def check_turn(cast: Cast, max_chars: int, npc: str, text: object, chapter: object, session: object,
               specials: tuple[str, ...] = ()) -> tuple[NpcSpec, str, int, str]:
    """Validate one turn before any work is done: (NPC spec, cleaned text, chapter, session) or a typed error."""
    return (cast.get(npc), clean_player_text(text, max_chars, specials), check_chapter(chapter),
            check_session(session))


GROUNDING_ADAPTER = "grounding"  # adapter name of `grounding.adapter`; cast ids cannot clash (no such id allowed)


@dataclass
class Reply:
    text: str
    route: str
    npc: str
    sources: list[dict]
    timings: dict
    reason: str = ""
    session: str = "default"
    chapter: int = 1
    tokens: dict = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    grounding: dict = field(default_factory=dict)  # fact/both turns: evidence used, how the answer was made

    def to_json(self) -> dict:
        return asdict(self)


def build_router(config: EternaConfig, cast: Cast, embedder, lore: LoreIndex, cues: Cues) -> Router:
    """The world's router: synthesised utterances from the index's lore and the cast, plus any seeds."""
    docs: dict[str, tuple[str, list[str]]] = {}
    for c in lore.chunks:
        docs.setdefault(c.doc, (c.title, []))[1].append(c.text)
    examples = synthesise([(t, " ".join(x)) for t, x in docs.values()], [n.name for n in cast.npcs], cues)
    if config.paths.router_seeds is not None:
        examples += load_seeds(config.paths.router_seeds)
    return Router(embedder, cues, examples, lore, lore_threshold=config.router.lore_threshold,
                  cache_dir=config.models.cache_dir / "router")


class DialogueEngine:
    def __init__(self, config: EternaConfig, cast: Cast, embedder, index: LoreIndex, generator: Generator,
                 router: Router, memory: SessionMemory, cues: Cues | None = None):
        self.config, self.cast, self.embedder, self.index = config, cast, embedder, index
        self.generator, self.router, self.memory = generator, router, memory
        self.cues = cues or router.cues
        self.selector = EvidenceSelector(embedder, self.cues, texts=[c.text for c in index.chunks])
        for npc in cast.npcs:
            if npc.adapter is not None:
                generator.add_adapter(npc.id, npc.adapter)
        if config.grounding.adapter is not None:
            generator.add_adapter(GROUNDING_ADAPTER, config.grounding.adapter)

    @classmethod
    def from_config(cls, path: str | Path, *, npcs: Path | None = None, index: Path | None = None,
                    llm: str | None = None) -> DialogueEngine:
        """Build everything a config names. Keyword overrides mirror the CLI flags."""
        config = EternaConfig.load(Path(path))
        return cls.from_settings(config, npcs=npcs, index=index, llm=llm)

    @classmethod
    def from_settings(cls, config: EternaConfig, *, npcs: Path | None = None, index: Path | None = None,
                      llm: str | None = None) -> DialogueEngine:
        cast = Cast.load(npcs or config.paths.npcs, config.world)
        cues = Cues.load(config.world.cues)
        embedder = SentenceTransformerEmbedder(config.models.embedder)
        lore = LoreIndex.open(index or config.paths.index, embedder)
        model_dir = prepare_model(llm or config.models.llm, config.models.cache_dir)
        generator = Generator(model_dir, config.models.dtype)
        router = build_router(config, cast, embedder, lore, cues)
        memory = SessionMemory(config.memory.turns, config.paths.sessions)
        return cls(config, cast, embedder, lore, generator, router, memory, cues)

    def idk_line(self, spec: NpcSpec) -> str:
        m = spec.markers
        return wrap_in_voice(spec.idk or self.config.world.idk, m.opens if m else None, m.closes if m else None)

    def say(self, npc: str, text: str, *, session: str = "default", chapter: int = 1,
            use_adapter: bool = True) -> Reply:
        """One reply. `use_adapter=False` speaks with the bare base model (an A/B variant)."""
        t_start = time.perf_counter()
        timings: dict[str, float] = {}

        def lap(name: str, t0: float) -> float:
            now = time.perf_counter()
            timings[name] = round((now - t0) * 1000, 2)
            return now

        spec, text, chapter, session = check_turn(self.cast, self.config.guard.max_input_chars, npc, text, chapter,
                                                  session, self.generator.special_tokens)
        flags = injection_flags(text)
        t = lap("guard_ms", t_start)

        qvec = self.embedder.encode([text])[0]  # (dim,)
        t = lap("embed_ms", t)
        # unfiltered: is this about the world at all? (and, on fact turns, does hidden lore answer it better?)
        unfiltered = self.index.search_vector(qvec, self.config.retrieval.k)
        lore_score = unfiltered[0].score if unfiltered else 0.0
        route = self.router.route(text, qvec, lore_score)
        t = lap("route_ms", t)

        grounded = route.label in ("fact", "both")
        g = self.config.grounding
        evidence = self._evidence(spec, text, qvec, chapter, unfiltered) if grounded else []
        t = lap("retrieve_ms", t)

        gen_cfg = self.config.generation
        adapter = spec.id if spec.adapter is not None and use_adapter else None
        grounding: dict = {}
        tokens: dict = {}
        if grounded and (not evidence or self._mode(route.label) == "extract"):
            if evidence:  # the best evidence sentences, in the character's voice markers: no generation
                evidence = evidence[: g.extract_sentences]
                out_text = self._extract(spec, evidence)
                grounding = {"answer": "extracted", "evidence": [e.source() for e in evidence]}
            else:  # nothing this character may know answers the question
                out_text, grounding = self.idk_line(spec), {"answer": "idk", "evidence": []}
            timings.update(prompt_ms=0.0, generate_ms=0.0)
        else:
            messages, evidence = build_messages(
                spec, route.label, evidence, self.memory.recent(session, spec.id), text, self.generator.count_tokens,
                gen_cfg.context_tokens - gen_cfg.max_new_tokens, world=self.config.world,
                prompts=self.config.prompts, guarded=bool(flags))
            t = lap("prompt_ms", t)
            decoding = Decoding.from_config(gen_cfg)
            if grounded:  # grounded decoding: copy the evidence's words, do not punish repeating them
                decoding = replace(decoding, repetition_penalty=g.repetition_penalty, penalty_scope=g.penalty_over,
                                   copy_bias=g.copy_bias, copy_text=" ".join(e.text for e in evidence))
                if g.adapter is not None and use_adapter:
                    adapter = GROUNDING_ADAPTER
            out = self.generator.generate(messages, decoding, adapter=adapter)
            t = lap("generate_ms", t)
            out_text = out.text
            tokens = {"prompt": out.prompt_tokens, "reply": out.new_tokens,
                      "per_second": round(out.new_tokens / out.seconds, 1) if out.seconds > 0 else None}
            if grounded:
                out_text, grounding = self._check(spec, text, out_text, evidence, self._mode(route.label))
                lap("check_ms", t)
        self.memory.add(session, spec.id, text, out_text)
        timings["total_ms"] = round((time.perf_counter() - t_start) * 1000, 2)
        sources = list({e.chunk: {"doc": e.doc, "chunk": e.chunk, "score": round(e.score, 4)}
                        for e in evidence}.values())
        return Reply(text=out_text, route=route.label, npc=spec.id, sources=sources, timings=timings,
                     reason=route.reason, session=session, chapter=chapter, flags=flags, tokens=tokens,
                     grounding=grounding)

    def _evidence(self, spec: NpcSpec, text: str, qvec, chapter: int, unfiltered: list) -> list[Evidence]:
        """Scoped retrieval, then evidence selection; empty when the character must say it does not know."""
        g = self.config.grounding
        scope = Scope(npc=spec.id, kinds=spec.kinds(), chapter=chapter)
        hits = [h for h in self.index.search_vector(qvec, self.config.retrieval.k, scope)
                if h.score >= self.config.retrieval.min_score]
        evidence = self.selector.select(text, qvec, hits, g.evidence_sentences, whole_chunks=g.whole_chunks)
        if evidence and not g.whole_chunks and (evidence[0].score < g.min_evidence
                                                or self._hidden_answers_better(text, qvec, evidence[0], unfiltered)):
            return []
        return evidence

    def _extract(self, spec: NpcSpec, evidence: list[Evidence]) -> str:
        m = spec.markers
        return wrap_in_voice(" ".join(e.text for e in evidence), m.opens if m else None, m.closes if m else None)

    def _mode(self, route: str) -> str:
        g = self.config.grounding
        return g.answer_both if route == "both" else g.answer

    def _hidden_answers_better(self, text: str, qvec, best: Evidence, unfiltered: list) -> bool:
        """Would evidence outside this character's scope or chapter answer clearly better? Then the answer is hidden
        from it (a spoiler, or another character's knowledge) and it must not improvise one from lesser facts.
        Only the decision to say "I do not know" uses the hidden text; none of it reaches the prompt."""
        g = self.config.grounding
        if g.hidden_margin is None:
            return False
        hits = [h for h in unfiltered if h.score >= self.config.retrieval.min_score]
        top = self.selector.select(text, qvec, hits, 1)
        return bool(top) and top[0].chunk != best.chunk and top[0].score - best.score >= g.hidden_margin

    def _check(self, spec: NpcSpec, question: str, reply: str, evidence: list[Evidence],
               mode: str) -> tuple[str, dict]:
        """The support check: a generated fact reply keeps only names and numbers its evidence holds; in `hybrid`
        mode it must also carry what the best evidence adds to the question. Otherwise the policy applies."""
        g = self.config.grounding
        used = [e.source() for e in evidence]
        info: dict = {"answer": "generated", "evidence": used, "supported": True}
        if not g.support_check and mode != "hybrid":
            return reply, info
        allowed = f"{question} {spec.name} {spec.persona} {spec.style} {self.config.world.name}"
        bad = self.selector.unsupported(reply, evidence, allowed) if g.support_check else []
        says_idk = bool(self.cues.find("idk", reply))
        carries = True
        if mode == "hybrid":
            top = evidence[: g.extract_sentences]
            need = set().union(*(self.selector.answer_tokens(question, e) for e in top))
            carries = not need or any(w in reply.lower() for w in need)
        info.update(supported=not bad, unsupported=bad, carries_answer=carries)
        if (not bad and carries and not says_idk) or g.on_unsupported == "keep":
            return reply, info
        if g.on_unsupported == "idk":
            return self.idk_line(spec), {**info, "answer": "idk"}
        top = evidence[: g.extract_sentences]
        return self._extract(spec, top), {**info, "answer": "extracted", "evidence": used[: len(top)],
                                          "generated": reply}
