"""The public Python API.

    engine = DialogueEngine.from_config("configs/eterna.yaml")
    reply = engine.say("keeper", "Who founded this place?", session="p1", chapter=1)
    reply.text, reply.route, reply.sources, reply.timings

One engine holds one base model, the cast's adapters, the embedder, the live index generation and the memory.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from app.config import Cast, EternaConfig, NpcSpec
from app.cues import Cues
from app.grounding import Evidence, EvidenceSelector, compose_answer, wrap_in_voice
from app.guard import check_chapter, check_session, clean_player_text, injection_flags
from app import assemble
from app.assemble import GROUNDING_ADAPTER, WARNED, attach_cast, build_backend, build_router, choose_backend  # noqa: F401
from app.memory import SessionMemory
from app.prompt import build_messages, instructions, prompt_head
from app.router import LABELS as ROUTES
from app.router import Route, Router
from app.voice import with_derived_markers
from app.runtime import Decoding, Generation, GenerationBackend, student_backend
from retrieval.errors import InputError
from retrieval.index import LoreIndex, read_current
from retrieval.text import split_sentences
from retrieval.types import Scope

log = logging.getLogger("eterna")


def check_turn(cast: Cast, max_chars: int, npc: str, text: object, chapter: object, session: object,
               specials: tuple[str, ...] = ()) -> tuple[NpcSpec, str, int, str]:
    """Validate one turn before any work is done: (NPC spec, cleaned text, chapter, session) or a typed error."""
    return (cast.get(npc), clean_player_text(text, max_chars, specials), check_chapter(chapter),
            check_session(session))


# "I'm DAN", "my name is CodeBot": a reply claiming a name (capitalised) that is not the character's
_IDENTITY = re.compile(r"\b(my name is|call me|I am now|I'm now|you may call me)\s+([A-Z][\w-]{2,})")
_LEAK_WORDS = 12


def _leaks(system: str, reply: str) -> bool:
    """Does the reply recite the system prompt: a run of 12 consecutive words of it, verbatim?"""
    words = re.findall(r"\w+", system.lower())
    if len(words) < _LEAK_WORDS:
        return False
    grams = {" ".join(words[i:i + _LEAK_WORDS]) for i in range(len(words) - _LEAK_WORDS + 1)}
    said = re.findall(r"\w+", reply.lower())
    return any(" ".join(said[i:i + _LEAK_WORDS]) in grams for i in range(len(said) - _LEAK_WORDS + 1))


class _SentenceGate:
    """Streams a generated reply sentence by sentence, each checked (with what came before) by `check`, which
    returns a flag when the text so far must not be said. The first failing sentence ends the reply there; a reply
    failing at its first sentence becomes the deflection. The text streamed always equals the final text."""

    _END = re.compile(r"[.!?…][\"'»”)\]]*\s")

    def __init__(self, check, *, max_sentences: int | None = None, markers: tuple[str, ...] = (),
                 closes: tuple[str, ...] = ()):
        """`max_sentences`: the reply is complete after this many sentences (the character's `markers` not
        counted); it is also complete once it ends with one of `closes` (the closing marker)."""
        self.check, self.said, self.buffer, self.failed, self.flag = check, "", "", False, None
        self.max_sentences, self.markers, self.closes = max_sentences, {m.strip() for m in markers}, closes
        self.complete: str | None = None  # why the reply is complete before the model stopped

    def feed(self, piece: str) -> list[str]:
        if self.failed:
            return []
        self.buffer += piece
        ends = list(self._END.finditer(self.buffer))
        if not ends:
            return []
        cut = ends[-1].end()
        chunk, self.buffer = self.buffer[:cut], self.buffer[cut:]
        if not self.said:
            chunk = chunk.lstrip()
        flag = self.check(self.said + chunk)
        if flag:
            self.failed, self.flag = True, flag
            return []
        self.said += chunk
        said = self.said.strip()
        if self.closes and said.endswith(self.closes):
            self.complete = "closing_marker"
        elif self.max_sentences and len([x for x in split_sentences(said) if x not in self.markers]) \
                >= self.max_sentences:
            self.complete = "max_sentences"
        return [chunk]

    def finish(self, final: str | None, deflection: str) -> tuple[str, str | None, str]:
        """(final text, flag, the last piece to stream). `final` is the backend's cleaned whole reply, or None
        when generation was stopped."""
        said = self.said.strip()
        if not self.failed and final is not None:
            if final.startswith(said):
                rest = final[len(said):]
                flag = self.check(final) if rest.strip() else None
                if not flag:
                    if final.startswith(self.said):
                        return final, None, final[len(self.said):]
                    return final, None, final[len(said):].lstrip()
                self.flag = flag
            elif not self.check(final):
                return final, None, ""
        if said:
            return said, self.flag, ""
        return deflection, self.flag, deflection


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

    @staticmethod
    def _in_voice(spec: NpcSpec, text: str) -> str:
        m = spec.markers
        return wrap_in_voice(text, m.opens if m else None, m.closes if m else None)

    def idk_line(self, spec: NpcSpec) -> str:
        return self._in_voice(spec, spec.idk or self.config.world.idk)

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
                import logging

                logging.getLogger("eterna").warning("index generation %s not loaded (%s); still serving %s",
                                                    live.name, e, self.index.path.name)
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
        evidence = self._evidence(spec, text, qvec, chapter, unfiltered, index, selector) if grounded else []
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
        elif grounded and (not evidence or self._mode(route.label) == "extract" or flags):
            if evidence:  # the best evidence sentences, in the character's voice markers: no generation
                evidence = evidence[: g.extract_sentences]
                out_text = self._extract(spec, evidence, text)
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
            gate = None if grounded else _SentenceGate(
                lambda said: self._output_guard(spec, instr, said)[1], max_sentences=gen_cfg.max_sentences,
                markers=tuple((m.opens + m.closes) if m else ()), closes=tuple(m.closes if m else ()))
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
                out_text, grounding = self._check(spec, text, out.text, evidence, self._mode(route.label))
                lap("check_ms", t)
                out_text, leak = self._output_guard(spec, instr, out_text)
                if leak:
                    flags = [*flags, leak]
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

    def _evidence(self, spec: NpcSpec, text: str, qvec, chapter: int, unfiltered: list, index: LoreIndex,
                  selector: EvidenceSelector) -> list[Evidence]:
        """Scoped retrieval, then evidence selection; empty when the character must say it does not know."""
        g = self.config.grounding
        scope = Scope(npc=spec.id, kinds=spec.kinds(), chapter=chapter)
        r = self.config.retrieval
        found = self.retriever.search(index, text, qvec, r.k, scope)
        hits = [h for h in found if h.score >= r.min_score]
        evidence = selector.select(text, qvec, hits, g.evidence_sentences, whole_chunks=g.whole_chunks)
        if evidence and not g.whole_chunks and (
                evidence[0].score < g.min_evidence
                or self._hidden_answers_better(text, qvec, evidence[0], unfiltered, selector)):
            return []
        return evidence

    def deflection(self, spec: NpcSpec) -> str:
        """The character's in-voice refusal to step out of the fiction (no generation: it cannot be talked round)."""
        return self._in_voice(spec, spec.deflect or self.config.world.deflect)

    def _output_guard(self, spec: NpcSpec, system: str, reply: str) -> tuple[str, str | None]:
        """A generated reply must not speak as a model, take another identity, or recite its instructions:
        otherwise the character's deflection replaces it. Returns (text, flag or None)."""
        if self.cues.find("fourth_wall", reply):
            return self.deflection(spec), "output_fourth_wall"
        claim = _IDENTITY.search(reply)
        if claim and claim.group(2).lower() not in spec.name.lower() and claim.group(2).lower() not in \
                {w.lower() for w in (spec.role, self.config.world.name)}:
            return self.deflection(spec), "output_identity"
        if _leaks(system, reply):
            return self.deflection(spec), "output_prompt_leak"
        return reply, None

    def _extract(self, spec: NpcSpec, evidence: list[Evidence], question: str) -> str:
        """The answer-first extract (grounding.compose_answer) in the character's markers, all within max_words."""
        g, m = self.config.grounding, spec.markers
        frame = sum(len(x[0].split()) for x in (m.opens, m.closes) if x) if m else 0
        budget = None if g.max_words is None else max(8, g.max_words - frame)
        return self._in_voice(spec, compose_answer(question, evidence, self.selector, budget, g.extract_sentences,
                                                   clauses=g.clauses))

    def _mode(self, route: str) -> str:
        g = self.config.grounding
        return g.answer_both if route == "both" else g.answer

    def _hidden_answers_better(self, text: str, qvec, best: Evidence, unfiltered: list,
                               selector: EvidenceSelector) -> bool:
        """Would evidence outside this character's scope or chapter answer clearly better? Then the answer is hidden
        from it (a spoiler, or another character's knowledge) and it must not improvise one from lesser facts.
        Only the decision to say "I do not know" uses the hidden text; none of it reaches the prompt."""
        g = self.config.grounding
        if g.hidden_margin is None:
            return False
        hits = [h for h in unfiltered if h.score >= self.config.retrieval.min_score]
        top = selector.select(text, qvec, hits, 1)
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
        return self._extract(spec, top, question), {**info, "answer": "extracted", "evidence": used[: len(top)],
                                          "generated": reply}
