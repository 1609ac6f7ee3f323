"""The public Python API.

    engine = DialogueEngine.from_config("configs/eterna.yaml")
    reply = engine.say("keeper", "Who founded this place?", session="p1", chapter=1)
    reply.text, reply.route, reply.sources, reply.timings

One engine holds one base model, the cast's adapters, the embedder, the live index generation and the memory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from app.config import Cast, EternaConfig, NpcSpec
from app import assemble
from app.assemble import GROUNDING_ADAPTER, WARNED, attach_cast, build_router  # noqa: F401  (re-exported)
from app.assemble import build_backend, choose_backend  # noqa: F401  (re-exported)
from app.cues import Cues
from app.grounding import EvidenceSelector, GroundingPolicy, deflection, idk_line
from app.guard import SentenceGate, check_turn, injection_flags, output_flag
from app.guard import SentenceGate as _SentenceGate  # noqa: F401  (re-exported: tests, benchmarks)
from app.guard import leaks as _leaks  # noqa: F401  (re-exported)
from app.memory import SessionMemory
from app.prompt import build_messages, instructions, prompt_head
from app.router import LABELS as ROUTES
from app.router import Route, Router
from app.voice import with_derived_markers
from app.runtime import Decoding, Generation, GenerationBackend, student_backend
from retrieval.errors import InputError
from retrieval.index import LoreIndex, read_current

log = logging.getLogger("eterna")


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
    context: dict = field(default_factory=dict)  # what went into the prompt, and what the budget dropped
    adapter: str | None = None  # the adapter the model generated with (None: the base model, or no generation)

    def to_json(self) -> dict:
        return asdict(self)


class DialogueEngine:
    def __init__(self, config: EternaConfig, cast: Cast, embedder, index: LoreIndex, generator: GenerationBackend,
                 router: Router, memory: SessionMemory, cues: Cues | None = None, index_root: Path | None = None):
        # characters without `markers:` speak inside the ones their style text names (app/voice.py), however the
        # engine was built (a config, a variant's other cast)
        self.config, self.cast, self.embedder, self.index = config, with_derived_markers(cast), embedder, index
        # the index folder whose CURRENT generation the engine follows (None: keep the one it was given)
        self.index_root = Path(index_root) if index_root is not None else None
        self._swap_lock = threading.Lock()
        self._bad_generation: Path | None = None
        self.generator, self.router, self.memory = generator, router, memory
        self.cues = cues or router.cues
        self.selector = EvidenceSelector(embedder, self.cues, texts=[c.text for c in index.chunks])
        self.retriever = config.retrieval.retriever(embedder)  # dense, bm25 or hybrid (+ rerank), by config
        # adapter names on the shared model: the NPC id, or id#hash when another engine on the same model (an A/B
        # variant with another cast) already attached a different adapter under that id
        self.adapter_names, self.grounding_adapter = attach_cast(generator, config, cast)

    _warned = WARNED  # drift warnings already given in this process (app.assemble)

    def npc_backend(self, spec: NpcSpec, use_adapter: bool = True) -> GenerationBackend:
        """The backend that speaks for a character: its own checkpoint (`model:`, loaded on first use) or the shared
        base model (with the character's adapter, if any)."""
        if spec.model is not None and use_adapter:
            return student_backend(spec.model, self.config.models.dtype)
        return self.generator

    def variant(self, *, config: EternaConfig | None = None, cast: Cast | None = None,
                index_root: Path | None = None, generator: GenerationBackend | None = None) -> DialogueEngine:
        """Another engine on this one's loaded models (embedder, and base model unless `generator` gives another
        one): a different config (decoding, grounding, retrieval), cast (other adapters), index or backend. Costs
        no model load; adapters attach once."""
        config = config or self.config
        cast = cast or self.cast
        if index_root is not None:
            index = LoreIndex.open(index_root, self.embedder)
        else:
            index, index_root = self.index, self.index_root
        router = self.router if index is self.index else build_router(config, cast, self.embedder, index, self.cues)
        return DialogueEngine(config, cast, self.embedder, index, generator or self.generator, router, self.memory,
                              self.cues, index_root=index_root)

    @classmethod
    def from_config(cls, path: str | Path, *, npcs: Path | None = None, index: Path | None = None,
                    llm: str | None = None, adapters: bool = True) -> DialogueEngine:
        """Build everything a config names (app.assemble). Keyword overrides mirror the CLI flags."""
        return assemble.from_config(path, npcs=npcs, index=index, llm=llm, adapters=adapters, engine=cls)

    @classmethod
    def from_settings(cls, config: EternaConfig, *, npcs: Path | None = None, index: Path | None = None,
                      llm: str | None = None, adapters: bool = True) -> DialogueEngine:
        """Build everything a loaded config names (app.assemble). `adapters=False` loads none of the cast's
        adapters: the base model speaks for everyone."""
        return assemble.from_settings(config, npcs=npcs, index=index, llm=llm, adapters=adapters, engine=cls)

    def idk_line(self, spec: NpcSpec) -> str:
        """The character's in-voice "I do not know" (app.grounding)."""
        return idk_line(spec, self.config.world)

    def deflection(self, spec: NpcSpec) -> str:
        """The character's in-voice refusal to step out of the fiction (app.grounding)."""
        return deflection(spec, self.config.world)

    def say(self, npc: str, text: str, *, session: str = "default", chapter: int = 1,
            use_adapter: bool = True, remember: bool = True, route: str | None = None) -> Reply:
        """One reply. `use_adapter=False` speaks with the bare base model (an A/B variant); `remember=False` leaves
        the session's memory as it was; `route` forces a route instead of asking the router (fact: always
        retrieve; style: never)."""
        for item in self._turn(npc, text, session, chapter, use_adapter, stream=False, remember=remember,
                               force_route=route):
            if isinstance(item, Reply):
                return item
        raise RuntimeError("a turn ended without a reply")  # unreachable

    def stream(self, npc: str, text: str, *, session: str = "default", chapter: int = 1,
               use_adapter: bool = True, remember: bool = True, route: str | None = None) -> Iterator[str | Reply]:
        """Yield the reply's text as it is decoded, then the final `Reply`. When the support check replaces a
        generated reply, the final `Reply.text` is what counts (a client shows it in place of the streamed text;
        `Reply.grounding["answer"]` says why)."""
        yield from self._turn(npc, text, session, chapter, use_adapter, stream=True, remember=remember,
                              force_route=route)

    def refresh_index(self) -> bool:
        """Pick up a new live index generation (after `eterna index rebuild` or `rollback`) between turns.
        Returns True when the generation changed. A failing new generation leaves the current one serving."""
        if self.index_root is None:
            return False
        try:
            live = read_current(self.index_root)
        except Exception:
            return False
        if live == self.index.path:
            return False
        with self._swap_lock:
            if live == self.index.path:
                return False
            if live == self._bad_generation:
                return False
            try:
                lore = LoreIndex.open(self.index_root, self.embedder)
            except Exception as e:  # a broken or foreign generation: keep serving the one we have
                log.warning("index generation %s not loaded (%s); still serving %s", live.name, e,
                            self.index.path.name)
                self._bad_generation = live
                return False
            selector = EvidenceSelector(self.embedder, self.cues, texts=[c.text for c in lore.chunks])
            self.router.lore = lore
            self.index, self.selector = lore, selector
        return True

    def _turn(self, npc: str, text: str, session: str, chapter: int, use_adapter: bool,
              stream: bool, remember: bool = True, force_route: str | None = None) -> Iterator[str | Reply]:
        if force_route is not None and force_route not in ROUTES:
            raise InputError(f"route {force_route!r} is not one of {', '.join(ROUTES)}")
        t_start = time.perf_counter()
        timings: dict[str, float] = {}

        def lap(name: str, t0: float) -> float:
            now = time.perf_counter()
            timings[name] = round((now - t0) * 1000, 2)
            return now

        spec, text, chapter, session = check_turn(self.cast, self.config.guard.max_input_chars, npc, text, chapter,
                                                  session, self.generator.special_tokens)
        flags = injection_flags(text)
        self.refresh_index()
        index, selector = self.index, self.selector  # one generation for the whole turn
        policy = GroundingPolicy(self.config, selector, self.cues, self.retriever)
        t = lap("guard_ms", t_start)

        qvec = self.embedder.encode([text])[0]  # (dim,)
        t = lap("embed_ms", t)
        # unfiltered: is this about the world at all? (and, on fact turns, does hidden lore answer it better?)
        unfiltered = self.retriever.search(index, text, qvec, self.config.retrieval.k)
        lore_score = max((h.score for h in unfiltered), default=0.0)
        route = self.router.route(text, qvec, lore_score) if force_route is None else \
            Route(force_route, f"forced {force_route} (variant)")
        t = lap("route_ms", t)

        grounded = route.label in ("fact", "both")
        g = self.config.grounding
        evidence = policy.evidence(spec, text, qvec, chapter, unfiltered, index) if grounded else []
        t = lap("retrieve_ms", t)

        gen_cfg = self.config.generation
        adapter = self.adapter_names.get(spec.id) if use_adapter else None
        own_model = spec.model is not None and use_adapter
        grounding: dict = {}
        tokens: dict = {}
        spoke: str | None = None  # the adapter of this turn's generation, if one ran with an adapter
        context: dict = {"index_generation": index.path.name, "model": str(spec.model) if own_model else "base"}
        if (flags and not grounded) or (route.label == "offworld" and self.config.guard.offworld == "deflect"):
            # a line that addresses the model (injection, role swap, character break): the character turns it
            # aside in its own voice, with no generation to talk round
            out_text = self.deflection(spec)
            grounding = {"answer": "deflected"}
            timings.update(prompt_ms=0.0, generate_ms=0.0)
            context.update(facts=[], turns=0, summary=False, prompt_tokens=0)
            if stream:
                yield out_text
        elif grounded and (not evidence or policy.mode(route.label) == "extract" or flags):
            if evidence:  # the best evidence sentences, in the character's voice markers: no generation
                evidence = evidence[: g.extract_sentences]
                out_text = policy.extract(spec, evidence, text)
                grounding = {"answer": "extracted", "evidence": [e.source() for e in evidence]}
            else:  # nothing this character may know answers the question
                out_text, grounding = self.idk_line(spec), {"answer": "idk", "evidence": []}
            timings.update(prompt_ms=0.0, generate_ms=0.0)
            context.update(facts=[e.chunk for e in evidence], turns=0, summary=False, prompt_tokens=0)
            if stream:
                yield out_text
        else:
            history, summary = self.memory.context(session, spec.id)
            generator = self.npc_backend(spec, use_adapter)
            budget = gen_cfg.context_tokens - gen_cfg.max_new_tokens
            report: dict = {}
            messages, evidence = build_messages(
                spec, route.label, evidence, history, text, generator.count_tokens, budget,
                world=self.config.world, prompts=self.config.prompts, guarded=bool(flags), summary=summary,
                report=report)
            context.update(report)
            t = lap("prompt_ms", t)
            decoding = Decoding.from_config(gen_cfg, cache_prefix=prompt_head(
                spec, route.label, self.config.world, self.config.prompts, bool(flags)))
            if grounded:  # grounded decoding: copy the evidence's words, do not punish repeating them
                decoding = replace(decoding, repetition_penalty=g.repetition_penalty, penalty_scope=g.penalty_over,
                                   copy_bias=g.copy_bias, copy_text=" ".join(e.text for e in evidence))
                if self.grounding_adapter is not None and use_adapter and not own_model:
                    adapter = self.grounding_adapter
            instr = instructions(spec, route.label, self.config.world, self.config.prompts)
            # free replies pass the output guard sentence by sentence as they stream; a grounded reply waits for
            # the support check, which needs all of it
            m = spec.markers
            gate = None if grounded else SentenceGate(
                lambda said: output_flag(spec, self.config.world.name, self.cues, instr, said),
                max_sentences=gen_cfg.max_sentences, markers=tuple((m.opens + m.closes) if m else ()),
                closes=tuple(m.closes if m else ()))
            out, n_pieces = None, 0
            spoke = adapter
            pieces = generator.stream(messages, decoding, adapter=adapter)
            try:
                for item in pieces:
                    if isinstance(item, Generation):
                        out = item
                        continue
                    n_pieces += 1
                    for ok in gate.feed(item) if gate else ():
                        timings.setdefault("first_token_ms", round((time.perf_counter() - t_start) * 1000, 2))
                        if stream:
                            yield ok
                    if gate and (gate.failed or gate.complete):
                        break  # stop generating: the rest would be thrown away, or the reply is complete
            finally:
                pieces.close()
            t = lap("generate_ms", t)
            if out is not None:
                tokens = {"prompt": out.prompt_tokens, "reply": out.new_tokens,
                          "per_second": round(out.new_tokens / out.seconds, 1) if out.seconds > 0 else None}
            else:
                tokens = {"reply": n_pieces, "stopped": gate.complete or "output_guard"}
            if grounded:
                out_text, grounding = policy.check(spec, text, out.text, evidence, policy.mode(route.label))
                lap("check_ms", t)
                leak = output_flag(spec, self.config.world.name, self.cues, instr, out_text)
                if leak:
                    out_text, flags = self.deflection(spec), [*flags, leak]
                if stream:
                    yield out_text
            else:
                out_text, leak, rest = gate.finish(out.text if out is not None else None, self.deflection(spec))
                if leak:
                    flags = [*flags, leak]
                if stream and rest:
                    yield rest
        if remember:
            self.memory.add(session, spec.id, text, out_text)
        timings["total_ms"] = round((time.perf_counter() - t_start) * 1000, 2)
        sources = list({e.chunk: {"doc": e.doc, "chunk": e.chunk, "score": round(e.score, 4)}
                        for e in evidence}.values())
        yield Reply(text=out_text, route=route.label, npc=spec.id, sources=sources, timings=timings,
                    reason=route.reason, session=session, chapter=chapter, flags=flags, tokens=tokens,
                    grounding=grounding, context=context, adapter=spoke)
