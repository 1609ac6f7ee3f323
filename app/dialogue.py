"""The public Python API.

    engine = DialogueEngine.from_config("configs/eterna.yaml")
    reply = engine.say("archivist", "Who founded the Library?", session="p1", chapter=1)
    reply.text, reply.route, reply.sources, reply.timings

One engine holds one base model, the cast's adapters, the embedder, the live index generation and the memory.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from app.config import Cast, EternaConfig, NpcSpec
from app.guard import check_chapter, check_session, clean_player_text, injection_flags
from app.memory import SessionMemory
from app.prompt import build_messages
from app.router import Router, load_seeds
from app.runtime import Generator
from retrieval.embeddings import SentenceTransformerEmbedder
from retrieval.index import LoreIndex
from retrieval.types import Scope
from tuning.base import prepare_model


def check_turn(cast: Cast, max_chars: int, npc: str, text: object, chapter: object, session: object,
               specials: tuple[str, ...] = ()) -> tuple[NpcSpec, str, int, str]:
    """Validate one turn before any work is done: (NPC spec, cleaned text, chapter, session) or a typed error."""
    return (cast.get(npc), clean_player_text(text, max_chars, specials), check_chapter(chapter),
            check_session(session))


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

    def to_json(self) -> dict:
        return asdict(self)


class DialogueEngine:
    def __init__(self, config: EternaConfig, cast: Cast, embedder, index: LoreIndex, generator: Generator,
                 router: Router, memory: SessionMemory):
        self.config, self.cast, self.embedder, self.index = config, cast, embedder, index
        self.generator, self.router, self.memory = generator, router, memory
        for npc in cast.npcs:
            if npc.adapter is not None:
                generator.add_adapter(npc.id, npc.adapter)

    @classmethod
    def from_config(cls, path: str | Path, *, npcs: Path | None = None, index: Path | None = None,
                    llm: str | None = None) -> DialogueEngine:
        """Build everything a config names. Keyword overrides mirror the CLI flags."""
        config = EternaConfig.load(Path(path))
        return cls.from_settings(config, npcs=npcs, index=index, llm=llm)

    @classmethod
    def from_settings(cls, config: EternaConfig, *, npcs: Path | None = None, index: Path | None = None,
                      llm: str | None = None) -> DialogueEngine:
        cast = Cast.load(npcs or config.paths.npcs)
        embedder = SentenceTransformerEmbedder(config.models.embedder)
        lore = LoreIndex.open(index or config.paths.index, embedder)
        model_dir = prepare_model(llm or config.models.llm, config.models.cache_dir)
        generator = Generator(model_dir, config.models.dtype)
        router = Router(embedder, load_seeds(config.paths.router_seeds), neighbours=config.router.neighbours,
                        lore_threshold=config.router.lore_threshold)
        memory = SessionMemory(config.memory.turns, config.paths.sessions)
        return cls(config, cast, embedder, lore, generator, router, memory)

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
        top = self.index.search_vector(qvec, 1)  # unfiltered: is this about the world at all?
        lore_score = top[0].score if top else 0.0
        route = self.router.route(text, qvec, lore_score)
        t = lap("route_ms", t)

        hits = []
        if route.label in ("fact", "both"):
            scope = Scope(npc=spec.id, kinds=spec.kinds(), chapter=chapter)
            hits = [h for h in self.index.search_vector(qvec, self.config.retrieval.k, scope)
                    if h.score >= self.config.retrieval.min_score]
        t = lap("retrieve_ms", t)

        gen_cfg = self.config.generation
        messages, hits = build_messages(spec, route.label, hits, self.memory.recent(session, spec.id), text,
                                        self.generator.count_tokens, gen_cfg.context_tokens - gen_cfg.max_new_tokens,
                                        guarded=bool(flags))
        t = lap("prompt_ms", t)
        adapter = spec.id if spec.adapter is not None and use_adapter else None
        out = self.generator.generate(messages, gen_cfg, adapter=adapter)
        t = lap("generate_ms", t)
        self.memory.add(session, spec.id, text, out.text)
        timings["total_ms"] = round((time.perf_counter() - t_start) * 1000, 2)
        return Reply(text=out.text, route=route.label, npc=spec.id, sources=[h.source() for h in hits],
                     timings=timings, reason=route.reason, session=session, chapter=chapter, flags=flags,
                     tokens={"prompt": out.prompt_tokens, "reply": out.new_tokens,
                             "per_second": round(out.new_tokens / out.seconds, 1) if out.seconds > 0 else None})
