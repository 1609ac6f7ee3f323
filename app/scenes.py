"""Scenes with several characters: who answers, characters reacting to each other, knowledge that stays in each head.

    scene = engine.scene("night-bar", npcs=["a", "b", "c"], director="narrator", session="p1")
    turn = scene.say("Who runs this place?", chapter=1)      # SceneTurn(replies=[Reply, ...], next_speaker=...)
    for item in scene.stream("And you, b?"): ...             # (npc, text) pieces, each Reply, then the SceneTurn

A scene line runs the single-character pipeline (app/turn.py) for the character who answers: `to`, the character
the player names (app/scene_policy.py), the director on "look around", else the responder policy (a registry).
Then up to `reactions` others react: a character whose own lore answers what the first could not answers it; else a
short free line (one sentence, `reaction_tokens` at most) to what was just said, in the reactor's own persona,
adapter, scope and state.

Memory: the scene's transcript (who said what, in order) is shared, and kept in the session store under the key
`<session>--scene--<scene id>` (RAM without one). Each character's prompt holds the recent transcript (what was
said aloud), its own scoped evidence and its own one-to-one history with the player (scene lines are not added to
that history). Grounded answers and the director's narration said aloud are evidence for the others, with the
speaker named ("<name> said: ..."): the "I do not know" gate and the support check accept them. Another character's
scoped lore never enters a prompt or evidence: retrieval is always under the speaker's own scope.

The director frames the scene on its first line and narrates on "look around" (cue `look`): the best sentences of
lore open to everyone (no `npc_scope` list) that the player's chapter and state allow, and who is present. It never
speaks for a character and its narration counts as said aloud.
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace

from app import action_turn
from app.guard import check_chapter, check_session, clean_player_text
from app.evaluation.quality import invented_specifics
from app.grounding import Evidence, in_voice, split_sentences
from app.scene_memory import Transcript, transcript_store
from app.scene_policy import RESPONDERS, Addresser, Line, common_words
from app.turn import Reply, Turn, check, compose, generate, ground, guard, reply, route
from retrieval.errors import EternaError, InputError
from retrieval.gates import State
from retrieval.types import Chunk, Hit, Scope

PLAYER = "player"
_SCENE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
PUBLIC = Scope(npc=" public")  # no character has this id: lore with an npc_scope list is out, the rest in


class SceneError(InputError):
    """A scene or scene line that cannot be played; `field` names the part at fault (npcs, director, to...)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass
class SceneTurn:
    """One scene line's outcome: every reply in the order said (a framing narration, the answer, the reactions),
    who answers an unaddressed small-talk line next (`next_speaker`), and how the answerer was chosen."""

    replies: list[Reply]
    next_speaker: str | None
    responder: str | None = None
    how: str = ""  # to | vocative | named | director | policy
    why: str = ""
    impersonates: str | None = None
    scores: dict = field(default_factory=dict)  # the policy's evidence score per character (fact lines)
    timings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"replies": [r.to_json() for r in self.replies], "next_speaker": self.next_speaker,
                "responder": self.responder, "how": self.how, "why": self.why,
                "impersonates": self.impersonates, "scores": self.scores, "timings": self.timings}


_COMMON: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _common(index) -> frozenset[str]:
    """Words in much of the lore of an index generation (never a character's alias), computed once per index."""
    if index not in _COMMON:
        _COMMON[index] = common_words([c.text for c in index.chunks])
    return _COMMON[index]


def _clip(text: str, n: int = 30) -> str:
    """The first `n` words of a line (a reaction's prompt stays short: prompt evaluation is its cost)."""
    w = text.split()
    return text if len(w) <= n else " ".join(w[:n]) + " ..."


def _strip_markers(spec, text: str) -> str:
    m = spec.markers
    for mark in ((m.opens + m.closes) if m else []):
        text = text.replace(mark, " ")
    return re.sub(r"\s+", " ", text).strip()


class Scene:
    def __init__(self, engine, scene_id: str, npcs: list[str], director: str | None = None,
                 session: str = "default", *, reactions: int = 1, policy: str = "knowledge",
                 reaction_tokens: int = 24, transcript_lines: int = 8, reaction_lines: int = 4,
                 store=None):
        if not isinstance(scene_id, str) or not _SCENE_ID.match(scene_id):
            raise SceneError("scene", f"scene id {scene_id!r} is invalid; use 1-64 letters, digits, '_' or '-'")
        if not isinstance(npcs, (list, tuple)) or not all(isinstance(n, str) for n in npcs):
            raise SceneError("npcs", "a list of character ids is needed, e.g. [\"a\", \"b\"]")
        ids = [c.id for c in engine.cast.npcs]
        unknown = [n for n in npcs if n not in ids]
        if unknown:
            raise SceneError("npcs", f"unknown character {unknown[0]!r}; the cast has {', '.join(ids)}")
        if len(set(npcs)) != len(npcs):
            raise SceneError("npcs", f"{next(n for n in npcs if npcs.count(n) > 1)!r} is listed twice")
        if len(npcs) < 2:
            raise SceneError("npcs", f"a scene needs at least two characters, got {len(npcs)}; talk to one "
                                     "character with say()")
        if director is not None and director not in ids:
            raise SceneError("director", f"unknown character {director!r}; the cast has {', '.join(ids)}")
        if director is not None and director in npcs:
            raise SceneError("director", f"{director!r} is also in npcs; a director frames the scene, it is not "
                                         "one of its speakers")
        if isinstance(reactions, bool) or not isinstance(reactions, int) or reactions < 0:
            raise SceneError("reactions", f"must be a whole number of at least 0, got {reactions!r}")
        try:
            session = check_session(session)
        except InputError as e:
            raise SceneError("session", str(e)) from None
        try:
            self.policy = RESPONDERS.lookup(policy)
        except EternaError as e:
            raise SceneError("policy", str(e)) from None
        self.engine, self.id, self.npcs, self.director, self.session = engine, scene_id, list(npcs), director, session
        self.reactions, self.reaction_tokens, self.transcript_lines = reactions, reaction_tokens, transcript_lines
        self.reaction_lines = reaction_lines
        self.specs = {n: engine.cast.get(n) for n in [*npcs, *([director] if director else [])]}
        self.addresser = Addresser(list(self.specs.values()), _common(engine.index))
        # `store`: where the transcript is kept (default: the engine's session store, or RAM beside its memory)
        self.transcript = Transcript(store if store is not None else transcript_store(engine.memory),
                                     f"{session}--scene--{scene_id}")

    # --- public API -------------------------------------------------------------------------------------------------
    def say(self, text: str, *, to: str | None = None, chapter: int = 1, state: dict | None = None) -> SceneTurn:
        for item in self.stream(text, to=to, chapter=chapter, state=state):
            if isinstance(item, SceneTurn):
                return item
        raise RuntimeError("a scene line ended without its turn")  # unreachable

    def stream(self, text: str, *, to: str | None = None, chapter: int = 1,
               state: dict | None = None) -> Iterator[tuple[str, str] | Reply | SceneTurn]:
        """Yield `(npc, text)` pieces of each reply as it may be shown, each finished `Reply`, then the
        `SceneTurn`. A reply's final `Reply.text` is authoritative (as for a single character's stream)."""
        started = time.perf_counter()
        if to is not None and to not in self.specs:
            raise SceneError("to", f"{to!r} is not in this scene; it has {', '.join(self.specs)}")
        text = clean_player_text(text, self.engine.config.guard.max_input_chars, self.engine.generator.special_tokens)
        chapter = check_chapter(chapter)
        State.of(state)
        lines = self.transcript.lines()
        replies: list[Reply] = []
        if self.director and not lines:  # the scene's start: the director frames it
            r = self.narrate(None, chapter, state, "the scene opens")
            replies.append(r)
            yield r
        addressing = self.addresser.read(text)
        self.transcript.add(PLAYER, text, "line", impersonates=addressing.impersonates)
        look = bool(self.engine.cues.find("look", text))
        base: Turn | None = None
        cache: dict[str, list[Evidence]] = {}
        who, how, why, scores = to, "to", "", {}
        if who is None and addressing.npc is not None and addressing.npc != addressing.impersonates:
            who, how = addressing.npc, addressing.how
        if who is None and look and self.director:
            who, how, why = self.director, "director", "asked to look around"
        if who is None:
            base = self._base(text, chapter, state)
            line = Line(text, base.route.label, list(self.npcs), lambda n: self._own(base, n, cache),
                        last=self.last(), impersonates=addressing.impersonates,
                        asks=lambda n: self._asks(base, n))
            who, why = self.policy(line)
            how, scores = "policy", line.scores
        if who == self.director:
            answer = self.narrate(text, chapter, state, why or "addressed")
            replies.append(answer)
            yield answer
        else:
            base = base or self._base(text, chapter, state)
            turn = self._turn(base, who, cache)
            answer = yield from self._speak(turn, stream=True)
            replies.append(answer)
            self.transcript.add(who, answer.text, "answer", facts=self._facts(answer))
            for r in self._react(base, turn, answer, cache, addressing.impersonates):
                replies.append(r)
                yield r
        yield SceneTurn(replies, next_speaker=self.last(), responder=who, how=how, why=why,
                        impersonates=addressing.impersonates, scores=scores,
                        timings={"total_ms": round((time.perf_counter() - started) * 1000, 2)})

    def last(self) -> str | None:
        """The character the player talked with last: who answers an unaddressed small-talk line."""
        for line in reversed(self.transcript.lines()):
            if line.get("role") == "answer" and line["speaker"] in self.npcs:
                return line["speaker"]
        return None

    def aloud(self, lines: list[dict] | None = None, clip: bool = False) -> str:
        """The recent transcript as a prompt block: who said what aloud, newest last (`clip`: each line cut to
        its first words, for a reaction's short prompt)."""
        lines = (self.transcript.lines() if lines is None else lines)[-self.transcript_lines:]
        if not lines:
            return ""
        said = [f"{self._name(x['speaker'])}: {_clip(x['text']) if clip else x['text']}" for x in lines]
        return "Said aloud in this scene (newest last):\n" + "\n".join(said)

    # --- the director ---------------------------------------------------------------------------------------------
    def narrate(self, text: str | None, chapter: int, state, why: str) -> Reply:
        """The director's narration: who is present, and the best sentence of lore open to everyone at this chapter
        and state (none already narrated). No generation: it cannot speak for a character or recite scoped lore."""
        t0 = time.perf_counter()
        e, spec = self.engine, self.specs[self.director]
        query = f"{self.id.replace('-', ' ').replace('_', ' ')} {text or ''}".strip()
        qvec = e.embedder.encode([query])[0]
        scope = replace(PUBLIC, chapter=chapter, state=State.of(state))
        hits = [h for h in e.retriever.search(e.index, query, qvec, e.config.retrieval.k, scope)
                if h.score >= e.config.retrieval.min_score]
        said = {x["text"] for x in self.transcript.lines()}
        best = [ev for ev in e.selector.select(query, qvec, hits, 6)
                if not re.search(r"[\"“”«»]", ev.text) and not any(ev.text in s for s in said)][:1]
        names = [self._name(n) for n in self.npcs]
        present = ", ".join(names[:-1]) + f" and {names[-1]}"
        body = f"Here with you: {present}." + (f" {best[0].text}" if best else "")
        out = in_voice(spec, body)
        self.transcript.add(self.director, out, "narration", facts=best[0].text if best else None)
        ms = round((time.perf_counter() - t0) * 1000, 2)
        return Reply(text=out, route="narration", npc=self.director, sources=[
            {"doc": b.doc, "chunk": b.chunk, "score": round(b.score, 4)} for b in best], timings={"total_ms": ms},
            reason=why, session=self.session, chapter=chapter,
            grounding={"answer": "narrated", "evidence": [b.source() for b in best]})

    # --- a character's turn ---------------------------------------------------------------------------------------
    def _name(self, speaker: str) -> str:
        return "The player" if speaker == PLAYER else self.specs[speaker].name if speaker in self.specs \
            else speaker

    def _base(self, text: str, chapter: int, state) -> Turn:
        """The line guarded and routed once (the route does not depend on who answers)."""
        turn = guard(self.engine, self.npcs[0], text, session=self.session, chapter=chapter, state=state)
        route(self.engine, turn)
        return turn

    def _own(self, base: Turn, npc: str, cache: dict) -> list[Evidence]:
        """A character's evidence from its own scope only (app.grounding: the "I do not know" gate included)."""
        if npc not in cache:
            spec = self.specs[npc]
            cache[npc] = base.policy.evidence(spec, base.text, base.qvec, base.chapter, base.unfiltered,
                                              base.index, base.state) if base.grounded else []
        return cache[npc]

    def _asks(self, base: Turn, npc: str) -> float:
        """How closely the line asks for one of this character's declared actions (best cosine to their examples;
        0.0: it declares none)."""
        ranked = action_turn.book(self.engine).scores(self.specs[npc], base.qvec[None, :], None)
        return ranked[0][0] if ranked else 0.0

    def heard(self, base: Turn, npc: str) -> list[Evidence]:
        """Evidence said aloud in the scene by the others (grounded answers, narration), speaker named, scored as
        lore is; what passes the config's `min_evidence`."""
        e, lines = self.engine, self.transcript.lines()
        rows = [(i, x) for i, x in enumerate(lines) if isinstance(x.get("facts"), str) and x["speaker"] != npc]
        hits, seen = [], set()
        for i, x in rows:
            for j, s in enumerate(split_sentences(x["facts"])):
                if s in seen:
                    continue
                seen.add(s)
                chunk = Chunk(id=f"scene:{self.id}:{i}.{j}", doc=f"scene:{self.id}", title=self._name(x["speaker"]),
                              kind="scene", npc_scope=None, chapter=1, heading="", hash="",
                              text=f"{self._name(x['speaker'])} said: {s}")
                hits.append(Hit(chunk, float(e.selector._vectors([chunk.text])[0] @ base.qvec), 0))
        if not hits:
            return []
        found = e.selector.select(base.text, base.qvec, hits, e.config.grounding.evidence_sentences)
        found = [f for f in found if f.score >= e.config.grounding.min_evidence]
        # the "I do not know" gate as for lore: lore nobody here said that answers clearly better keeps it unknown
        if found and base.policy.hidden_answers_better(base.text, base.qvec, found[0], base.unfiltered):
            return []
        return found

    def _turn(self, base: Turn, npc: str, cache: dict, text: str | None = None, forced: str | None = None,
              lines: int | None = None) -> Turn:
        """The character's turn on the guarded line: its own scoped evidence plus what was said aloud."""
        if text is not None:  # a reaction: another line (what was just said), its own route
            turn = guard(self.engine, npc, text, session=self.session, chapter=base.chapter, route=forced,
                         state=base.state)
            route(self.engine, turn)
            ground(self.engine, turn)
        else:
            turn = replace(base, npc=self.specs[npc], flags=list(base.flags), timings=dict(base.timings),
                           evidence=[], started=time.perf_counter(), clock=0.0, context=dict(base.context))
            action_turn.act(self.engine, turn)  # the addressed character may act, as in a single turn
            if turn.action is not None and turn.grounded:  # an action and a question: the question, its own scope
                ground(self.engine, turn)
            elif turn.grounded:
                g = self.engine.config.grounding
                own = self._own(base, npc, cache)
                known = {x.text for x in own}  # what its own lore says already is not heard again
                heard = [h for h in self.heard(base, npc) if h.text.split(" said: ", 1)[-1] not in known]
                turn.evidence = sorted(own + heard, key=lambda x: -x.score)[: g.evidence_sentences]
            turn.lap("retrieve_ms")
        said = self.transcript.lines()
        turn.aloud = self.aloud(said[-lines:] if lines else said, clip=bool(lines))
        return turn

    def _speak(self, turn: Turn, stream: bool, short: bool = False):
        """Compose, generate and check a turn (app.turn's stages; nothing joins the one-to-one memory). A
        generator: yields `(npc, piece)` while streaming, then the `Reply`; returns the `Reply`."""
        compose(self.engine, turn)
        if short and turn.decoding is not None:
            turn.decoding = replace(turn.decoding, max_new_tokens=min(turn.decoding.max_new_tokens,
                                                                      self.reaction_tokens))
            if turn.gate is not None:
                turn.gate.max_sentences = 1
        with closing(generate(self.engine, turn)) as pieces:
            for piece in pieces:
                if stream:
                    yield turn.npc.id, piece
        tail = check(self.engine, turn)
        if stream and tail is not None:
            yield turn.npc.id, tail
        out = reply(turn)
        yield out
        return out

    def _facts(self, r: Reply) -> str | None:
        """What a grounded reply said aloud, its speaker's markers off: evidence for the others (None: a free
        line, "I do not know" or a deflection, which are not)."""
        if r.grounding.get("answer") in ("extracted", "generated") and r.grounding.get("evidence"):
            return _strip_markers(self.specs[r.npc], r.text)
        return None

    # --- reactions ------------------------------------------------------------------------------------------------
    def _react(self, base: Turn, turn: Turn, answer: Reply, cache: dict, impersonated: str | None) -> Iterator[Reply]:
        """Up to `reactions` other characters react. When the answer was "I do not know" on a fact line, a
        character whose own lore answers it speaks up first; else a short free line to what was just said, by who
        is named in it, then who spoke least recently. A reaction the output guard stops, or a free one naming a name or
        number its prompt does not hold, is not said (at most 2 x `reactions` free lines are tried)."""
        if not self.reactions or base.flags or answer.grounding.get("answer") == "deflected":
            return
        pool = [n for n in self.npcs if n != turn.npc.id and n != impersonated]
        knowers = []
        if base.grounded and answer.grounding.get("answer") == "idk":
            knowers = sorted((n for n in pool if self._own(base, n, cache)), key=lambda n: -cache[n][0].score)
        spoke = {x["speaker"]: i for i, x in enumerate(self.transcript.lines())}
        said = f"{base.text} {answer.text}"
        named = {n for n in pool if any(re.search(rf"(?<!\w){re.escape(a)}(?!\w)", said)
                                        for a in self.addresser.aliases[n] if a != n)}
        order = knowers + sorted((n for n in pool if n not in knowers),
                                 key=lambda n: (n not in named, spoke.get(n, -1)))
        made = tries = 0
        for npc in order:
            if made >= self.reactions or tries >= 2 * self.reactions:
                break
            t0 = time.perf_counter()
            if npc in knowers:
                r = yield_from_speak(self, self._turn(base, npc, cache))
            else:
                tries += 1
                heard = f'{self._name(turn.npc.id)} says: "{_clip(_strip_markers(turn.npc, answer.text))}"'
                said = self._turn(base, npc, cache, text=heard, forced="style", lines=self.reaction_lines)
                r = yield_from_speak(self, said, short=True)
                # a free line may not bring names or numbers its prompt does not hold: invented, or another
                # head's knowledge by chance; such a reaction is not said
                if invents(r.text, said.messages):
                    continue
            if r.flags or not r.text.strip() or r.grounding.get("answer") == "deflected":
                continue
            r.reason = f"reaction ({'its own lore answers' if npc in knowers else 'to ' + turn.npc.id}): {r.reason}"
            r.timings["reaction_ms"] = round((time.perf_counter() - t0) * 1000, 2)
            self.transcript.add(npc, r.text, "reaction", facts=self._facts(r))
            made += 1
            yield r


def invents(text: str, messages: list[dict]) -> list[str]:
    """The names and numbers of `text` that none of the prompt's `messages` holds (app/evaluation/quality.py)."""
    return invented_specifics(text, " ".join(str(m.get("content", "")) for m in messages))


def yield_from_speak(scene: Scene, turn: Turn, short: bool = False) -> Reply:
    """A turn spoken without streaming its pieces: its `Reply`."""
    out = None
    for item in scene._speak(turn, stream=False, short=short):
        out = item
    return out
