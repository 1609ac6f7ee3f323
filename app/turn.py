"""One turn of dialogue as a pipeline: guard → route → act → ground → compose → generate → check → remember.

A `Turn` record carries what the turn knows so far; each stage is a function of the engine (its services: config,
cast, embedder, index, retriever, router, backends, memory) and the turn, reading what the earlier stages wrote and
filling in its own part. `run` chains the stages; `DialogueEngine.say` and `stream` are `run`.

    turn = guard(engine, "keeper", "Who founded this place?", session="p1", chapter=1)
    route(engine, turn); ground(engine, turn); compose(engine, turn)
    streamed = list(generate(engine, turn)); check(engine, turn); remember(engine, turn)
    reply(turn).text
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from app import action_turn
from app.backends import Generation
from app.backends.decoding import Decoding
from app.grounding import GroundingPolicy
from app.guard import SentenceGate, check_turn, injection_flags, output_flag
from app.prompt import build_messages, prompt_heads
from app.router import LABELS as ROUTES
from app.router import Route, lore_match
from retrieval.errors import InputError
from retrieval.gates import EMPTY, State
from retrieval.text import split_sentences

if TYPE_CHECKING:
    from app.config import NpcSpec
    from app.dialogue import DialogueEngine
    from app.grounding import Evidence
    from app.backends import GenerationBackend
    from retrieval.index import LoreIndex
    from retrieval.types import Scope


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
    actions: list[dict] = field(default_factory=list)  # [{"name", "args"}]: what the game should do (app/actions.py)

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Turn:
    """What one turn knows, stage by stage."""

    npc: NpcSpec
    text: str  # the player's line, cleaned by the guard
    chapter: int
    session: str
    index: LoreIndex  # the index generation of the whole turn
    policy: GroundingPolicy  # the grounding policy over that generation
    state: State = EMPTY  # the game's state (validated); documents whose `requires` it fails are hidden
    flags: list[str] = field(default_factory=list)  # the guard's (and the output guard's) flags
    use_adapter: bool = True
    forced: str | None = None  # a route the caller forces instead of asking the router
    tools: frozenset[str] | None = None  # the actions this turn may return (None: all the character declares)
    action: object = None  # the action the line asks for (app/actions.py's Outcome), or None
    actions: list[dict] = field(default_factory=list)  # the accepted action as [{"name", "args"}]
    question: str | None = None  # the part of the line that is a question, when another part asks for an action
    qvec: object = None  # (dim,) the player's line embedded
    unfiltered: list = field(default_factory=list)  # hits without scope or chapter: is this about the world at all?
    route: Route | None = None
    evidence: list[Evidence] = field(default_factory=list)
    head: str = ""  # the prompt head (cacheable by a backend), built once a turn
    instructions: str = ""  # the head with the guard reminder: what a generated reply must never recite
    messages: list[dict] = field(default_factory=list)
    backend: GenerationBackend | None = None
    decoding: Decoding | None = None
    adapter: str | None = None  # the adapter to generate with
    gate: SentenceGate | None = None  # free replies: the output guard, sentence by sentence as they stream
    new_gate: object = None  # free replies: makes a fresh gate (best-of-n gives each candidate its own)
    recalled: str = ""  # the remembered exchanges and summary in the prompt, as text
    best_of: dict | None = None  # best-of-n turns: the candidates and the chosen one's index
    generation: Generation | None = None  # the backend's whole reply (None: generation stopped early)
    pieces: int = 0  # pieces the backend streamed
    output: str | None = None  # the reply's text (set before generation when none is needed)
    grounding: dict = field(default_factory=dict)
    tokens: dict = field(default_factory=dict)
    spoke: str | None = None  # the adapter of this turn's generation, if one ran with an adapter
    context: dict = field(default_factory=dict)
    drew_on: frozenset[str] = frozenset()  # documents the remembered exchanges in the prompt drew on
    aloud: str = ""  # a scene's recent transcript (app/scenes.py): what was said aloud, put in the prompt
    timings: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    clock: float = 0.0  # when the last timed step ended

    @property
    def grounded(self) -> bool:
        return self.route is not None and self.route.label in ("fact", "both")

    def lap(self, name: str) -> None:
        """Time the step that ends now under `name` (ms)."""
        now = time.perf_counter()
        self.timings[name] = round((now - (self.clock or self.started)) * 1000, 2)
        self.clock = now

    def since_start(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 2)


def guard(engine: DialogueEngine, npc: str, text: object, *, session: object = "default", chapter: object = 1,
          use_adapter: bool = True, route: str | None = None, state: object = None, tools=None) -> Turn:
    """Validate the turn before any work (typed errors), flag lines that address the model, and fix the index
    generation the turn runs on (a new live one is picked up here, between turns)."""
    if route is not None and route not in ROUTES:
        raise InputError(f"route {route!r} is not one of {', '.join(ROUTES)}")
    started = time.perf_counter()
    spec, text, chapter, session = check_turn(engine.cast, engine.config.guard.max_input_chars, npc, text, chapter,
                                              session, engine.generator.special_tokens)
    state = State.of(state)  # not an object, too deep, too large: an InputError naming `state`
    flags = injection_flags(text)
    engine.refresh_index()
    index, selector = engine.index, engine.selector  # one generation for the whole turn
    policy = GroundingPolicy(engine.config, selector, engine.cues, engine.retriever)
    turn = Turn(spec, text, chapter, session, index, policy, state=state, flags=flags, use_adapter=use_adapter,
                forced=route, started=started, tools=None if tools is None else frozenset(tools))
    turn.lap("guard_ms")
    return turn


def route(engine: DialogueEngine, turn: Turn) -> None:
    """Embed the line and route it (fact, style, both, offworld), on its lore match without scope or chapter: a
    question about hidden lore is still a fact question."""
    turn.qvec = engine.embedder.encode([turn.text])[0]  # (dim,)
    turn.lap("embed_ms")
    turn.unfiltered = engine.retriever.search(turn.index, turn.text, turn.qvec, engine.config.retrieval.k)
    lore_score = lore_match(turn.unfiltered)  # the router's feature, searched as in its training
    turn.route = engine.router.route(turn.text, turn.qvec, lore_score) if turn.forced is None else \
        Route(turn.forced, f"forced {turn.forced} (variant)")
    turn.lap("route_ms")


def ground(engine: DialogueEngine, turn: Turn) -> None:
    """Fact and mixed turns: the evidence this character may know at this chapter (none: it does not know)."""
    text, qvec, unfiltered = turn.question or turn.text, turn.qvec, turn.unfiltered
    if turn.grounded and engine.config.grounding.ask_only:
        text, qvec, unfiltered = asked(engine, turn)
    turn.evidence = turn.policy.evidence(turn.npc, text, qvec, turn.chapter, unfiltered, turn.index,
                                         turn.state, asked=turn.question or turn.text) if turn.grounded else []
    turn.lap("retrieve_ms")


def asked(engine: DialogueEngine, turn: Turn) -> tuple[str, object, list]:
    """What the evidence is searched and selected for: the question without how the player asks it ("Tell me in
    three words how many books ..." is "how many books ..."), embedded and searched unscoped again (the hidden
    margin compares against that search), so a polite frame does not move the search. Three words at least, or the
    line as it is. The answer reader still reads the player's own question when it orders what is said."""
    text = turn.question or turn.text
    bare = engine.cues.without(("ask_frame",), text)
    if bare == text or len(bare.split()) < 3:
        return text, turn.qvec, turn.unfiltered
    qvec = engine.embedder.encode([bare])[0]
    return bare, qvec, engine.retriever.search(turn.index, bare, qvec, engine.config.retrieval.k)


def compose(engine: DialogueEngine, turn: Turn) -> None:
    """The answer, when no generation is needed (the deflection; the extracted evidence; "I do not know"), else the
    prompt: its head (built once), messages within the context budget, decoding, adapter and output guard."""
    spec, config, policy = turn.npc, engine.config, turn.policy
    own_model = spec.model is not None and turn.use_adapter
    turn.context.update(index_generation=turn.index.path.name, model=str(spec.model) if own_model else "base")
    label, g, gen_cfg = turn.route.label, config.grounding, config.generation
    if action_turn.answer(engine, turn):
        pass  # an action turn that asks no question: the action's line, no generation
    elif (turn.flags and not turn.grounded) or (label == "offworld" and config.guard.offworld == "deflect"):
        # a line that addresses the model (injection, role swap, character break): the character turns it aside in
        # its own voice, with no generation to talk round
        turn.output, turn.grounding = engine.deflection(spec), {"answer": "deflected"}
    elif turn.grounded and (not turn.evidence or policy.mode(label) == "extract" or turn.flags):
        if turn.evidence:  # the best evidence sentences, in the character's voice markers: no generation
            turn.evidence = policy.said(turn.question or turn.text, turn.evidence)
            turn.grounding = {"answer": "extracted", "evidence": [e.source() for e in turn.evidence]}
            lead = _frame(engine, turn) if g.frame == "adapter" and not turn.flags else ""
            turn.output = policy.extract(spec, turn.evidence, turn.question or turn.text, lead=lead, chosen=True)
        else:  # nothing this character may know answers the question
            turn.output, turn.grounding = engine.idk_line(spec), {"answer": "idk", "evidence": []}
    if turn.output is not None:
        turn.timings.update(prompt_ms=0.0, generate_ms=0.0)
        turn.context.update(facts=[e.chunk for e in turn.evidence], turns=0, summary=False, prompt_tokens=0)
        return
    # exchanges that drew on a document hidden this turn (its gate shut again) stay out of the prompt
    hidden = hidden_docs(turn.index, spec.scope(turn.chapter, turn.state))
    history, summary, turn.drew_on, left_out = engine.memory.recall(turn.session, spec.id, hidden)
    turn.context["memory_hidden"] = left_out
    turn.recalled = " ".join([summary, *(f"{u} {r}" for u, r in history)])
    turn.backend = engine.npc_backend(spec, turn.use_adapter)
    turn.head, turn.instructions = prompt_heads(spec, label, config.world, config.prompts, bool(turn.flags))
    report: dict = {}
    turn.messages, turn.evidence = build_messages(  # a prompt shows evidence_sentences (the reader reads more)
        spec, label, turn.evidence[: g.evidence_sentences], history, turn.text, turn.backend.count_tokens,
        gen_cfg.context_tokens - gen_cfg.max_new_tokens, world=config.world, prompts=config.prompts,
        guarded=bool(turn.flags), summary="\n\n".join(x for x in (summary, turn.aloud) if x), report=report,
        head=turn.head)
    turn.context.update(report)
    turn.lap("prompt_ms")
    turn.decoding = Decoding.from_config(gen_cfg, cache_prefix=turn.head)
    turn.adapter = engine.adapter_names.get(spec.id) if turn.use_adapter else None
    if turn.grounded:  # grounded decoding: copy the evidence's words, do not punish repeating them
        turn.decoding = replace(turn.decoding, repetition_penalty=g.repetition_penalty, penalty_scope=g.penalty_over,
                                copy_bias=g.copy_bias, copy_text=" ".join(e.text for e in turn.evidence))
        if engine.grounding_adapter is not None and turn.use_adapter and not own_model:
            turn.adapter = engine.grounding_adapter
        return
    # free replies pass the output guard sentence by sentence as they stream; a grounded reply waits for the
    # support check, which needs all of it
    m, world = spec.markers, config.world.name
    invents = None
    if gen_cfg.stop_invented:  # a made-up name or number ends the reply before it (after the first sentence)
        from app.bestof import known_for
        from app.evaluation.quality import invented_specifics

        known = known_for(engine, turn)
        invents = lambda sentence: invented_specifics(sentence, "", known)  # noqa: E731
    turn.new_gate = lambda: SentenceGate(lambda said: output_flag(spec, world, engine.cues, turn.instructions, said),
                                         max_sentences=gen_cfg.max_sentences,
                                         markers=tuple((m.opens + m.closes) if m else ()),
                                         closes=tuple(m.closes if m else ()), invents=invents)
    turn.gate = turn.new_gate()


def _frame(engine: DialogueEngine, turn: Turn) -> str:
    """`grounding.frame: adapter`: the lead-in the character's adapter writes to the extracted fact (the small-talk
    prompt, the player's line, at most `frame_tokens`), or "" when the support check does not pass it
    (GroundingPolicy.frame_fault; what was written goes to `turn.grounding["frame"]`). A character without an adapter
    keeps its markers alone."""
    spec, config = turn.npc, engine.config
    adapter = engine.adapter_names.get(spec.id) if turn.use_adapter else None
    if adapter is None and not (spec.model is not None and turn.use_adapter):
        return ""
    backend = engine.npc_backend(spec, turn.use_adapter)
    head, _ = prompt_heads(spec, "style", config.world, config.prompts)
    decoding = replace(Decoding.from_config(config.generation, cache_prefix=head),
                       max_new_tokens=config.grounding.frame_tokens)
    said = backend.generate([{"role": "system", "content": head}, {"role": "user", "content": turn.text}], decoding,
                            adapter=adapter).text
    m = spec.markers
    for marker in (m.opens + m.closes) if m else ():  # the markers are said around the whole reply anyway
        said = said.replace(marker, " ")
    sentences = split_sentences(said)
    lead = sentences[0].strip() if sentences else ""
    fault = turn.policy.frame_fault(spec, turn.question or turn.text, lead, turn.evidence)
    turn.grounding["frame"] = {"text": lead, "said": fault is None, **({"fault": fault} if fault else {})}
    turn.lap("frame_ms")
    return lead if fault is None else ""


def generate(engine: DialogueEngine, turn: Turn) -> Iterator[str]:
    """Run the model on the composed prompt (nothing to do when compose answered). Yields what may be streamed as
    it is made: a free reply's sentences once the output guard passed them; a grounded reply streams nothing yet."""
    if turn.backend is None:
        return
    if turn.gate is not None and engine.config.generation.best_of.n > 1:
        _best_of(engine, turn)
        return
    gate, turn.spoke = turn.gate, turn.adapter
    pieces = turn.backend.stream(turn.messages, turn.decoding, adapter=turn.adapter)
    try:
        for item in pieces:
            if isinstance(item, Generation):
                turn.generation = item
                continue
            turn.pieces += 1
            for ok in gate.feed(item) if gate else ():
                turn.timings.setdefault("first_token_ms", turn.since_start())
                yield ok
            if gate and (gate.failed or gate.complete):
                break  # stop generating: the rest would be thrown away, or the reply is complete
    finally:
        pieces.close()
    turn.lap("generate_ms")
    out = turn.generation
    if out is not None:
        turn.tokens = {"prompt": out.prompt_tokens, "reply": out.new_tokens,
                       "per_second": round(out.new_tokens / out.seconds, 1) if out.seconds > 0 else None}
    else:
        turn.tokens = {"reply": turn.pieces, "stopped": gate.complete or "output_guard"}


def _best_of(engine: DialogueEngine, turn: Turn) -> None:
    """A free reply chosen from n candidates (app/bestof.py); nothing streams until the choice is made."""
    from app.bestof import choose

    turn.spoke = turn.adapter
    best, cands = choose(engine, turn, turn.new_gate, turn.recalled)
    turn.lap("generate_ms")
    turn.best_of = {"chosen": cands.index(best), "candidates": [
        {"text": c.text, "score": round(c.score, 3), "features": c.features, "flag": c.flag} for c in cands]}
    turn.tokens = {"reply": best.tokens, "candidates": sum(c.tokens for c in cands), "best_of": len(cands)}
    turn.output = best.text
    if best.flag:
        turn.flags = [*turn.flags, best.flag]


def check(engine: DialogueEngine, turn: Turn) -> str | None:
    """The reply's final text: a grounded generation passes the support check, then the output guard; a free one
    what its gate let through (the deflection when nothing). Returns what is still to stream (None: nothing)."""
    if turn.backend is None:  # compose answered: nothing generated to check
        return turn.output
    spec = turn.npc
    if turn.grounded:
        policy = turn.policy
        turn.output, turn.grounding = policy.check(spec, turn.text, turn.generation.text, turn.evidence,
                                                   policy.mode(turn.route.label))
        turn.lap("check_ms")
        leak = output_flag(spec, engine.config.world.name, engine.cues, turn.instructions, turn.output)
        if leak:
            turn.output, turn.flags = engine.deflection(spec), [*turn.flags, leak]
        return turn.output
    if turn.best_of is not None:  # chosen among candidates, each already through its own gate
        return turn.output
    final = turn.generation.text if turn.generation is not None else None
    turn.output, leak, rest = turn.gate.finish(final, engine.deflection(spec))
    if leak:
        turn.flags = [*turn.flags, leak]
    return rest or None


def remember(engine: DialogueEngine, turn: Turn) -> None:
    """The line and the reply join the session's memory of this character."""
    engine.memory.add(turn.session, turn.npc.id, turn.text, turn.output,
                      docs={e.doc for e in turn.evidence} | turn.drew_on)


def hidden_docs(index: LoreIndex, scope: Scope) -> frozenset[str]:
    """The documents of the index that `scope` does not allow (other characters', later chapters', shut gates)."""
    mask = index.allowed_mask(scope)
    return frozenset() if mask is None else frozenset(index.chunks[i].doc for i in np.flatnonzero(~mask))


def reply(turn: Turn) -> Reply:
    """The turn's `Reply` (its total time ends here)."""
    turn.timings["total_ms"] = turn.since_start()
    sources = list({e.chunk: {"doc": e.doc, "chunk": e.chunk, "score": round(e.score, 4)}
                    for e in turn.evidence}.values())
    return Reply(text=turn.output, route=turn.route.label, npc=turn.npc.id, sources=sources, timings=turn.timings,
                 reason=turn.route.reason, session=turn.session, chapter=turn.chapter, flags=turn.flags,
                 tokens=turn.tokens, grounding=turn.grounding, adapter=turn.spoke, actions=turn.actions,
                 context={**turn.context, "best_of": turn.best_of} if turn.best_of else turn.context)


def run(engine: DialogueEngine, npc: str, text: object, *, session: object = "default", chapter: object = 1,
        use_adapter: bool = True, stream: bool = False, keep: bool = True, route_as: str | None = None,
        state: object = None, tools=None) -> Iterator[str | Reply]:
    """The stages in order. Yields the text as it may be shown (when `stream`), then the `Reply`. `keep=False`
    leaves the session's memory as it was; `route_as` forces a route; `tools` narrows the actions it may return."""
    turn = guard(engine, npc, text, session=session, chapter=chapter, use_adapter=use_adapter, route=route_as,
                 state=state, tools=tools)
    route(engine, turn)
    action_turn.act(engine, turn)
    ground(engine, turn)
    compose(engine, turn)
    with closing(generate(engine, turn)) as pieces:
        for piece in pieces:
            if stream:
                yield piece
    tail = action_turn.finish(engine, turn, check(engine, turn))
    if stream and tail is not None:
        yield tail
    if keep:
        remember(engine, turn)
    yield reply(turn)
