"""The turn's action stage: which declared action a line asks for, its arguments, and what the turn does about it.

    act(engine, turn)         # after route: turn.action (an Outcome or None), turn.route, turn.question
    tail = finish(engine, turn, tail)   # after check: the action's line joins a grounded answer

Detection compares the line (and each of its clauses) with the character's declared actions: the cosine of the
engine's own embedding against each action's examples, description and templated paraphrases, the router's `action`
probability, whether the clause is a request directed at the character, and the words only that action's
declaration uses (app/action_detect.py, which holds the decision and its thresholds). The state (never the player's
words) decides the gate: shut → refused; a required argument missing or outside its schema → incomplete (the
character asks for it); else accepted, with arguments that each passed the schema (app/action_args.py). A line the
input guard flagged never gets an action: a refusal or an ask stays (no value reaches the game), an accepted one
becomes the deflection. A line that also asks a question gets both: the clause that is not the action is routed
on its own, and grounded when it is a fact question.
A `tools` list on the turn narrows which actions may be found (the others are as if undeclared).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from app.action_args import (LABELLED, QUOTED, SAYING, aliased, by_apposition, by_description, by_explained,
                             by_title_word, by_wording, complete, extract_args, initialisms, is_long, kind_values,
                             lore_aliases, lore_appositions, lore_descriptions, lore_documents, lore_names,
                             lore_numbers, message_alone, missing, named_as, norm, said_total, tells_whole,
                             told_message, truecase, valid, with_titles)
from app.action_detect import (MARGIN, REQUEST_COS, REQUEST_WORDS, Evidence, by_values_only, declared_words,
                               described_words, gives_all, informs, named, own_order, paraphrases, relayed, request,
                               request_verb, stems, terse, vocabulary)
from app.actions import Outcome, with_answer
from app.router import Route, lore_match, offworld_allowed
from retrieval.text import ABBREVIATIONS, split_sentences

if TYPE_CHECKING:
    from app.cast import NpcSpec
    from app.dialogue import DialogueEngine
    from app.turn import Turn

_WH = r"what|who|whom|where|when|why|how|which|whose|is|are|was|were|do|does|did"
# sentences; questions joined by "and ..."; a question after a colon or dash ("About the north room: how many ...";
# not "Message for the cook: tell her ...", whose text after the colon is the message)
# (not after a title or an initial: "Mr. Hale, could you ...", "Under Mrs D. Okafor")
_NOT_TITLE = "".join(rf"(?<!\b{a}\.)" for a in sorted(ABBREVIATIONS) if "." not in a) + r"(?<!\b(?-i:[A-Z])\.)"
_CLAUSES = re.compile(rf"(?<=[.!?;]){_NOT_TITLE}\s+"
                      rf"|,?\s+(?:and|but|also|then|while)\s+(?=(?:{_WH}|can|could|tell|say|explain)\b)"
                      rf"|\s*[:—–]\s*(?=(?:{_WH})\b)", re.I)


# a lone capitalised word set off by commas inside a sentence calls the listener ("The boat needs work, Brun, when
# can you take her?"): no value is said by it
_CALLED_MID = re.compile(r"(?<=\w,)\s+([A-Z][\w’'-]+),\s+(?=[a-z])")


STAGE = re.compile(r"(?<![\w*])\*[^*\n]{1,200}\*(?![\w*])")


def clauses(text: str) -> list[str]:
    """The line's clauses (sentences, stage directions, and questions joined by "and ..." or after a colon), each
    with a word at least; never split inside a quotation ("message: 'Arrived. Home by spring.'")."""
    quoted = [m.span() for m in QUOTED.finditer(text)]
    cuts = [m.span() for m in _CLAUSES.finditer(text) if not any(a < m.start() < b for a, b in quoted)]
    # a stage direction is a clause of its own ("*lays a lamp on the desk* Mend it"): it acts out, it asks nothing
    cuts += [(m.start(), m.start()) for m in STAGE.finditer(text)] + [(m.end(), m.end()) for m in STAGE.finditer(text)]
    pieces, at = [], 0
    for a, b in sorted(cuts):
        if a >= at:
            pieces.append(text[at:a])
            at = b
    pieces.append(text[at:])
    return [c.strip() for c in pieces if c and re.search(r"\w", c)]


class ActionBook:
    """Each character's action vectors (examples, description and paraphrases, embedded once) and words."""

    def __init__(self, embedder):
        self.embedder = embedder
        self._vecs: dict[tuple, list[tuple[object, np.ndarray]]] = {}
        self._words: dict[tuple, dict[str, frozenset[str]]] = {}
        self._declared: dict[tuple, dict[str, set[str]]] = {}
        self._said: dict[str, np.ndarray] = {}  # a word or two of a line, embedded (`kinds`), bounded
        self._aliases: dict[tuple, dict] = {}  # lore names and descriptions of enum values (`kinds`)
        self._lore: dict[tuple, tuple] = {}  # the ungated lore a character sees at a chapter: (sentences, docs)

    def embedded(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) vectors of short texts, each embedded once (a cache of at most 20,000)."""
        new = [t for t in dict.fromkeys(texts) if t not in self._said]
        if new:
            if len(self._said) + len(new) > 20000:
                self._said.clear()
            self._said.update(zip(new, self.embedder.encode(new)))
        return np.stack([self._said[t] for t in texts]) if texts else np.zeros((0, 1))

    def aliases(self, index, spec: NpcSpec, action, chapter: int) -> dict[str, dict[str, str]]:
        """`lore_aliases` and `lore_names` of the action's enums and `lore_numbers` of its numbers, from the lore this
        character sees at this chapter whatever the game's state (no gated document: a gate that may be shut never
        names a value), once per index generation."""
        kinds = self._from_lore(index, spec, action, chapter, lore_aliases)
        names = self._from_lore(index, spec, action, chapter, lore_names)
        numbers = self._from_lore(index, spec, action, chapter, lore_numbers)  # ("the Kettle" is bay 11)
        return {k: {**numbers.get(k, {}), **names.get(k, {}), **kinds.get(k, {})} for k in {*kinds, *names, *numbers}}

    def descriptions(self, index, spec: NpcSpec, action, chapter: int) -> dict[str, dict[str, frozenset[str]]]:
        """`lore_descriptions` of the action's enums, with what each value's own document says (`lore_documents`),
        from the same lore as `aliases`."""
        said = self._from_lore(index, spec, action, chapter, lore_descriptions)
        pages = self._from_lore(index, spec, action, chapter, lore_documents)
        return {k: {v: said.get(k, {}).get(v, frozenset()) | pages.get(k, {}).get(v, frozenset())
                    for v in {*said.get(k, {}), *pages.get(k, {})}} for k in {*said, *pages}}

    def appositions(self, index, spec: NpcSpec, action, chapter: int) -> dict[str, dict[str, frozenset[str]]]:
        """`lore_appositions` of the action's free-string names, from the same lore as `aliases`."""
        return self._from_lore(index, spec, action, chapter, lore_appositions)

    def titles(self, index, spec: NpcSpec, action, chapter: int) -> dict[str, list[str]]:
        """{parameter: titles}: the action's free strings that name a kind of the lore's documents (`with_titles`),
        from the same lore as `aliases`."""
        return self._from_lore(index, spec, action, chapter, _titles)

    def _from_lore(self, index, spec: NpcSpec, action, chapter: int, read):
        seen = (str(getattr(index, "path", id(index))), spec.id, chapter)
        key = (*seen, action.name, repr(action.params), read.__name__)
        if key not in self._aliases:
            if len(self._aliases) > 512:
                self._aliases.clear()
                self._lore.clear()
            if seen not in self._lore:  # (split once for all of the character's actions)
                seeable = [c for c in index.chunks if c.chapter <= chapter
                           and (c.npc_scope is None or spec.id in c.npc_scope)]
                chunks = [c for c in seeable if c.requires is None]
                self._lore[seen] = ([x for c in chunks for x in split_sentences(c.text)], _documents(chunks),
                                    _documents([c for c in seeable if c.requires is not None]),
                                    {c.title: c.kind for c in chunks})
            sentences, docs, shut, kinds = self._lore[seen]
            if read in (lore_names, lore_documents, _titles):  # (a title named as an enum's value is)
                titled = with_titles(action.params, kinds)
                got = read(action.params, titled) if read is _titles else \
                    read(titled, docs, shut) if read is lore_documents else read(titled, docs)
            else:
                got = read(action.params, sentences)
            self._aliases[key] = got
        return self._aliases[key]

    @staticmethod
    def _key(spec: NpcSpec) -> tuple:
        return spec.id, tuple((a.name, a.description, tuple(a.examples), repr(a.params)) for a in spec.actions)

    def vectors(self, spec: NpcSpec) -> list[tuple[object, np.ndarray]]:
        key = self._key(spec)
        if key not in self._vecs:
            self._vecs[key] = [(a, self.embedder.encode([*a.examples, a.description, *paraphrases(a)]))
                               for a in spec.actions]
        return self._vecs[key]

    def words(self, spec: NpcSpec) -> dict[str, frozenset[str]]:
        key = self._key(spec)
        if key not in self._words:
            self._words[key] = vocabulary(spec.actions, spec.name)
        return self._words[key]

    def declared(self, spec: NpcSpec) -> dict[str, set[str]]:
        """Per action, every stem its declaration uses (`declared_words`), computed once per cast entry."""
        key = self._key(spec)
        if key not in self._declared:
            self._declared[key] = {a.name: declared_words(a) for a in spec.actions}
        return self._declared[key]

    def scores(self, spec: NpcSpec, vecs: np.ndarray, names: frozenset[str] | None) -> list[tuple[float, np.ndarray,
                                                                                                  object]]:
        """(best cosine, each row's best cosine, the action), best first, for the actions `names` allows. `vecs`:
        (rows, dim), the whole line and then its clauses."""
        out = []
        for action, mat in self.vectors(spec):
            if names is not None and action.name not in names:
                continue
            rows = (vecs @ mat.T).max(axis=1)  # (rows,)
            out.append((float(rows.max()), rows, action))
        return sorted(out, key=lambda x: -x[0])


def _titles(params: dict, titled: dict) -> dict[str, list[str]]:
    """{parameter: titles} of the free strings `with_titles` made enums in `titled`."""
    own = params.get("properties") or {}
    return {k: v["enum"] for k, v in (titled.get("properties") or {}).items()
            if isinstance(v, dict) and "enum" in v and isinstance(own.get(k), dict) and "enum" not in own[k]}


def _documents(chunks: list) -> list[tuple[str, str]]:
    """(title, text) of each document of `chunks`, its chunks joined in order."""
    docs: dict[str, list] = {}
    for c in chunks:
        docs.setdefault(c.doc, [c.title, []])[1].append(c.text)
    return [(title, " ".join(texts)) for title, texts in docs.values()]


def book(engine: DialogueEngine) -> ActionBook:
    got = engine.__dict__.get("_action_book")
    if got is None:
        got = engine.__dict__["_action_book"] = ActionBook(engine.embedder)
    return got


def _names_value(action, clause: str) -> bool:
    """Does the clause name a value of one of the action's enums ("axe fighting")?"""
    props = {k: v for k, v in (action.params.get("properties") or {}).items() if isinstance(v, dict) and "enum" in v}
    return bool(props) and bool(extract_args({"type": "object", "properties": props}, clause))


def _weigh(engine: DialogueEngine, turn: Turn, parts: list[str], vecs: np.ndarray) -> list[tuple[Evidence, int,
                                                                                                   object]]:
    """(the evidence of its best row, that row, the action) for each action the turn may return, best first."""
    spec, ab = turn.npc, book(engine)
    words = ab.words(spec)
    p_router: dict[int, float] = {}

    def p_action(i: int) -> float:
        if i not in p_router:
            p_router[i] = turn.route.signals.get("probabilities", {}).get("action", 0.0) if i == 0 else \
                float(engine.router.probabilities(parts[i], vecs[i], lore_match(turn.unfiltered))[-1])
        return p_router[i]

    asked = [request(engine.cues, p) for p in parts]
    questions = [informs(engine.cues, p) for p in parts]
    for j in range(2, len(parts)):  # "how cold is it? like actual degrees pls": more of the question, no order
        said_more = engine.cues.find("clarify", parts[j])
        if questions[j - 1] and said_more and request_verb(parts[j][len(said_more):].lstrip(" ,")) is None:
            asked[j], questions[j] = False, True
    said = [stems(p) | stems(" ".join(engine.cues.meant(p))) for p in parts]  # "fit her in" says "book"
    beside = len(parts) > 1 and any(questions[1:])  # (parts[0] is the whole line, the rest its clauses)
    # the line's statements without its questions: an order in parts beside a question ("North gate. Five of us.
    # When can we leave?", "Private room for 2, six nights. Is supper on?")
    statement = ", ".join(re.sub(r"[\s.!]+$", "", p) for p, q in zip(parts[1:], questions[1:]) if not q) \
        if beside and len(parts) > 2 else ""
    statement = "" if not statement or informs(engine.cues, statement) else statement
    # a request that says its object only by a pronoun or a vague verb ("Would you be able to recover it for us?",
    # "could you fit in my crewmate Ama?") asks for what the line's statements say ("Our caravan's wheel bearing
    # has gone", "It's urgent."): their words count as the request's own
    told = [j for j in range(1, len(parts)) if not questions[j] and not asked[j]]
    borrowed = {i: said[i].union(*(said[j] for j in told)) for i in range(1, len(parts))
                if asked[i] and not questions[i] and told}
    out = []
    declared = ab.declared(spec)
    listener = frozenset({spec.name, *spec.name.split()})  # ("Ray, put us on ...": no word of a tour's)
    spaced = [f" {norm(p)} " for p in parts]  # each part as lore names are matched in it
    aliases = {a.name: ab.aliases(turn.index, spec, a, turn.chapter) for a in spec.actions}  # lore names of values
    described = {a.name: ab.descriptions(turn.index, spec, a, turn.chapter) for a in spec.actions}  # and its words
    for _, rows, action in ab.scores(spec, vecs, turn.tools):
        best = None
        for i in range(len(parts)):  # an order said as a noun phrase ("adult pass for a week") asks too
            ordered = asked[i] or (not questions[i] and
                                   terse(parts[i], action, declared[action.name], aliases[action.name],
                                         described[action.name]))
            question = questions[i]
            # "teach me axe fighting", to a character who teaches it (the values, an extraction, read last)
            if question and own_order(engine.cues, parts[i], words[action.name], True) and \
                    _names_value(action, parts[i]):
                ordered, question = True, False
            if i == 0 and statement and not ordered and terse(statement, action, declared[action.name],
                                                              aliases[action.name], described[action.name]):
                ordered, question = True, False
            own = len(borrowed.get(i, said[i]) & words[action.name])
            if any(f" {alias} " in spaced[i] for names in aliases[action.name].values() for alias in names):
                own += 1  # a value named as the lore names it ("take me to the candle house": Casa de las Velas)
            elif ordered and by_description(action.params, parts[i], {}, described[action.name], listener,
                                            described_words(action)):
                own += 1  # or described as the lore describes it ("see me down to the fountain with the bronze
                # heron": the court's own page has them)
            if ordered and not question and own < REQUEST_WORDS and rows[i] < REQUEST_COS and \
                    gives_all(action, parts[i], aliases[action.name], described[action.name], listener):
                # a request that gives every argument the action requires names it as well as a word of its own
                # ("six of the comfrey-and-linen ones, ta", in the words the lore says of one remedy)
                own = REQUEST_WORDS
            ev = Evidence(float(rows[i]), p_action(i), ordered, own, named(action, parts[i]), question,
                          beside and not question)
            key = (ev.asks(), ev.rank())
            if best is None or key > best[0]:
                best = (key, ev, i)
        out.append((best[1], best[2], action))
    return sorted(out, key=lambda x: (-x[0].asks(), -x[0].rank()))


def _fits_better(text: str, weighed: list) -> list:
    """The first action of `weighed` (each (evidence, row, action), best first) goes after another of the
    character's that also asks and fits the line better, when the first takes no arguments (it is asked for by its
    likeness alone, and nothing checks the line against it): the other carries a message the line quotes ("a
    rune-stick for Imre, saying 'I will come back'"), or the line uses the other's own words and none of the first's
    ("runes carved for my brother" is no fortune read). (Between two actions with arguments, a value named does not
    decide: "my puppy Biscotti his shots" names a food's value, and asks for an appointment.)"""
    if not weighed or (weighed[0][2].params.get("properties") or {}):
        return weighed
    first_ev = weighed[0][0]
    quotes = bool(QUOTED.search(text) or SAYING.search(text))

    def fits(ev, action) -> bool:
        carries = any(isinstance(v, dict) and is_long(k, v) for k, v in (action.params.get("properties") or {}).items())
        return ev.asks() and ((quotes and carries) or (ev.words > 0 and first_ev.words == 0))

    for i, (ev, _, action) in enumerate(weighed[1:], 1):
        if fits(ev, action):
            return [weighed[i], *weighed[:i], *weighed[i + 1:]]
    return weighed


def detect(engine: DialogueEngine, turn: Turn) -> tuple[Outcome | None, str, np.ndarray | None]:
    """(the outcome, the rest of the line that is not the action, its vector)."""
    spec = turn.npc
    text = truecase(turn.text)  # a line in capitals: its names found as in any other (the embedder is uncased)
    parts = clauses(text) or [text]
    vecs = turn.qvec[None, :] if len(parts) == 1 else engine.embedder.encode(parts)  # (clauses, dim)
    if len(parts) > 1:
        vecs = np.vstack([turn.qvec[None, :], vecs])
        parts = [text, *parts]
    weighed = _weigh(engine, turn, parts, vecs)
    if not weighed:
        return None, "", None
    first = weighed[0][2]
    weighed = _fits_better(text, weighed)
    ev, at, action = weighed[0]
    lead = ev.rank() - weighed[1][0].rank() if len(weighed) > 1 and weighed[1][0].asks() else 1.0
    lead = lead if action is first else 1.0  # (the better fit decided it)
    turn.context["action_scores"] = {a.name: round(e.cosine, 3) for e, _, a in weighed}
    turn.context["action_router"] = round(ev.p_action, 3)
    turn.context["action_evidence"] = {"request": ev.is_request, "words": ev.words, "named": ev.named}
    if not ev.asks() or lead < MARGIN:
        return None, "", None
    if at == 0 and len(parts) > 1:  # the whole line won: the action's clause is the one closest to it
        rows = next(r for _, r, a in book(engine).scores(spec, vecs, frozenset({action.name})))
        at = 1 + int(np.argmax(rows[1:]))
    clause = parts[at]
    others = [i for i in range(1, len(parts)) if i != at]
    rest = " ".join(parts[i] for i in others)
    rest_vec = vecs[others[0]] if len(others) == 1 else (engine.embedder.encode([rest])[0] if rest else None)
    outcome = Outcome(action, "accepted", score=round(ev.cosine, 3))
    never = {spec.name, *spec.name.split(), *initialisms(action.description)}  # ("call NARS": the service)
    things = set(action.name.split("_"))  # "a lamp" is one, for an action named sell_lamp
    args = line_args(action.params, clause, [parts[i] for i in others], never, things, text,
                     cast={n.name for n in engine.cast.npcs})
    if not args and ev.by_words_only() and action.params.get("properties"):
        # only a word of the action's own and nothing of its arguments: "Open your heart to me" asks for no gate
        return None, "", None
    if ev.by_words_only() and by_values_only(action, clause, book(engine).words(spec)[action.name]):
        return None, "", None  # "could you tell the keeper of <a gate>": another verb, only a value's words
    if not ev.named and relayed(action, clause):
        return None, "", None  # "tell the porter to stop ...": an order for somebody else
    if not tells_whole(action.params, args) and elsewhere(engine, turn, ev, vecs, args):
        return None, "", None
    ab = book(engine)
    called = never | set(_CALLED_MID.findall(text))  # ("needs work, Brun, when ...": the listener, no kind of job)
    guess = engine.cues.find("choice", text) is None  # ("Whatever you think suits me": no value by likeness)
    args = kinds(ab, action.params, text, args, called, ab.declared(spec)[action.name],
                 ab.aliases(turn.index, spec, action, turn.chapter), guess)
    described, own = ab.descriptions(turn.index, spec, action, turn.chapter), described_words(action)
    args = by_description(action.params, text, args, described, called, own)
    args = by_apposition(action.params, text, args, ab.appositions(turn.index, spec, action, turn.chapter), called, own)
    args = by_title_word(action.params, text, args, ab.titles(turn.index, spec, action, turn.chapter))
    args = by_gloss(ab, action.params, text, args, described, called, own) if guess else args
    args = by_wording(action.params, text, args)
    args = message_alone(action.params, args, own)
    if not action.allowed(turn.state):
        outcome.status = "refused"
    else:
        outcome.args = args
        outcome.missing = missing(action.params, outcome.args)
        if outcome.missing or not complete(action.params, outcome.args):
            outcome.status = "incomplete"
            outcome.missing = outcome.missing or list(action.params.get("required") or [])
    return outcome, rest, rest_vec


def line_args(params: dict, clause: str, others: list[str], never: set[str], things: set[str],
              whole: str = "", cast: set[str] = frozenset()) -> dict:
    """The arguments of the action's clause, then what it lacks from the line's other clauses ("A candle? Just the
    one."). A number there is one the action's clause did not give ("in berth twenty-two", before "three hundred
    litres", is the berth); a name given as the name ("Put it under Ada Ruiz.") outranks a proper noun of the action's
    clause. A message the clause begins runs on in the `whole` line ("tell them he fell off his bike and can't feel
    his legs" is one message, though the line's clauses part at "and"). `cast`: the world's characters' names, never
    an animal's."""
    args = extract_args(params, clause, exclude=never, things=things, cast=cast)
    props = params.get("properties") or {}
    for k, v in list(args.items()):
        if whole and isinstance(v, str) and isinstance(props.get(k), dict) and is_long(k, props[k]):
            longer = extract_args({"type": "object", "properties": {k: props[k]}}, whole, exclude=never).get(k)
            if isinstance(longer, str) and len(longer) > len(v) and norm(longer).startswith(norm(v)) and \
                    not re.search(r"[.!?]\s", longer[len(v):]):  # (within its sentence)
                args[k] = longer
    for other in others:
        open_params = {**params, "properties": {k: v for k, v in props.items()
                                                if k not in args or isinstance(args[k], str)}}
        more = extract_args(open_params, other, exclude=never | {str(v) for v in args.values()}, things=things,
                            cast=cast)
        given = {k: v for k, v in more.items() if k in args and isinstance(v, str) and v in named_as(other)
                 and not named_as(clause)}
        args.update({k: v for k, v in more.items() if k not in args} | given)
    for k, v in list(args.items()):  # a message a label opened runs to the line's end ("TEXT: SOLD. COME HOME.")
        if isinstance(v, str) and isinstance(props.get(k), dict) and is_long(k, props[k]):
            labelled = [m.group(1).strip() for m in LABELLED.finditer(whole or clause)
                        if (whole or clause)[m.start(1) - 1] not in "\"“'‘"]  # (a quoted message ends with its quote)
            args[k] = next((x for x in labelled if len(x) > len(v) and norm(x).startswith(norm(v))
                            and valid(props[k], x)), v)
    args.update(said_total(params, whole or " ".join([clause, *others])))  # "... my wife and our four children.
    # That's six of us all told": the total
    return told_message(params, args, whole or clause)  # a message no marker gave, anywhere in the line: last


def _phrases(text: str, never: set[str], taken: set[str], declared: set[str], longest: int) -> list[str]:
    """The line's content words (longer than two letters, no stop word, none of `never` or of the values `taken`, a
    possessive's "'s" dropped: "daughter's 9"), then each run of two, up to `longest`, of them in a row; never one
    made only of the action's own words (`declared`, stems)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    skip = {w.lower() for w in never} | set(taken) | ENGLISH_STOP_WORDS
    words = [re.sub(r"['’]s$", "", w.lower()) for w in re.findall(r"[^\W\d_][\w'’-]*", text)]
    content = [w if len(w) > 2 and w not in skip else None for w in words]
    out = [w for w in content if w]
    for n in range(2, longest + 1):
        out += [" ".join(run) for run in zip(*(content[i:] for i in range(n))) if all(run)]
    return [p for p in out if not stems(p) <= declared]


# the player says they never did it ("the kids have never been on skis", "first time on a horse"): the word
# "beginner" is one more phrase of the line, so a kind that means it is found ("beginner", "novice")
_NOVICE = re.compile(r"\bnever\s+(?:\w+\s+)?(?:been\s+on|stood\s+on|tried|skied|sailed|ridden|rode|set\s+foot\s+on|"
                     r"held\s+an?|clicked\s+into)\b|\bfirst[- ]timers?\b|\bfirst\s+(?:time|week|day)\s+(?:ever\s+)?"
                     r"(?:on|in|with)\b|\bno\s+experience\b", re.I)
KIND_COSINE, KIND_MARGIN = 0.5, 0.1  # a word means an enum value: this close, and this much closer than to another


def kinds(ab: ActionBook, params: dict, text: str, args: dict, never: set[str],
          declared: set[str] = frozenset(), aliases: dict | None = None, guess: bool = True) -> dict:
    """`args` with the enum parameters the words did not give, by meaning: a word or two of the line that
    means one of the values ("puppy" or "Labrador" for "dog", "shots" for "vaccination", "bunny" for "rabbit").
    Only values written as plain lower-case words (kinds, not names), and only a word whose cosine to that value is
    at least KIND_COSINE and KIND_MARGIN above its cosine to any other value of the parameter ("vet" is as close to
    "cat" as to "dog": neither; "hamster" is no ferret), and never a word of the action's own declaration
    (`declared`, stems: "gear" in "rent some gear" names the action's whole range, not one value of it). First, a
    name the lore gives one value (`aliases`, from `lore_aliases`: "a dozen jugs of the Morning Mist"; required
    kinds only). An optional kind is given the same way ("here for treatment at the infirmary": medical). Each
    value still passes its schema. `guess` False (the player leaves the choice to the character, the `choice`
    cues): only the lore's names and the description's own words (`by_explained`) give a value, no likeness."""
    props = params.get("properties") or {}
    args = aliased(params, text, args, aliases)  # a name the lore gives one value ("Morning Mist" for clear sake,
    # "the Candle House" for Casa de las Velas)
    args = by_explained(params, text, args)  # a word the description explains one kind with ("bent": mend)
    if not guess:  # the player leaves the choice to the character ("whatever you think suits me")
        return args
    open_ = {k: kind_values(sch) for k, sch in props.items()
             if k not in args and isinstance(sch, dict) and isinstance(sch.get("enum"), list)}
    open_ = {k: vs for k, vs in open_.items() if len(vs) > 1}  # an optional one too ("treatment at the infirmary")
    if not open_:
        return args
    open_ = {k: vs for k, vs in open_.items() if k not in args}
    if not open_:
        return args
    taken = " ".join(norm(v) for v in args.values() if isinstance(v, str)).split()
    said = _phrases(text, never, set(taken), declared, 2) + (["beginner"] if _NOVICE.search(text) else [])
    if not said:
        return args
    out, vecs = dict(args), ab.embedded(said)  # (said, dim)
    for name, values in open_.items():
        values = [v for v in values if v not in out.values()]
        if len(values) < 2:
            continue
        sims = vecs @ ab.embedded(values).T  # (said, values)
        order = np.sort(sims, axis=1)
        ok = (order[:, -1] >= KIND_COSINE) & (order[:, -1] - order[:, -2] >= KIND_MARGIN)
        if ok.any():
            best = int(np.argmax(np.where(ok, order[:, -1], -1.0)))
            value = values[int(np.argmax(sims[best]))]
            if valid(props[name], value):
                out[name] = value
    return out


GLOSS_COSINE, GLOSS_MARGIN = 0.6, 0.1  # a phrase means a value said with its lore: this close, this much closer


def by_gloss(ab: ActionBook, params: dict, text: str, args: dict, descriptions: dict | None,
             never: set[str] = frozenset(), declared: set[str] = frozenset()) -> dict:
    """`args` with the one thing the action still lacks, a required enum of kinds, by meaning: a word, two or three
    of the line at least GLOSS_COSINE close to one value said with what the lore says of it alone (its gloss,
    "hunting knife: copper mark ..." from `descriptions`), and GLOSS_MARGIN closer than to any other value's gloss
    ("the blade you sell for 3 marks and 6 coppers" is the hunting knife, "the room that looks straight across at
    the depot clock" the front room). Only when that enum is the action's last missing argument, never a word of the
    action's own (`declared`, `described_words`), of a value already taken or a stop word; the value still passes
    its schema. (On the development lines that should ask, none passes: "I'll leave the kind of weapon to you" is
    0.73 to "sword", but only 0.08 above the next value.)"""
    props = params.get("properties") or {}
    lacking = [k for k in params.get("required") or [] if k not in args]
    if len(lacking) != 1 or not isinstance(props.get(lacking[0]), dict):
        return args
    name = lacking[0]
    values = kind_values(props[name])
    if len(values) < 2:
        return args
    taken = set(" ".join(norm(str(v)) for v in args.values()).split())
    grams = _phrases(text, never, taken, declared, 3)
    if not grams:
        return args
    said = (descriptions or {}).get(name, {})
    glosses = [v + (": " + " ".join(sorted(said[v])) if said.get(v) else "") for v in values]
    best = (ab.embedded(grams) @ ab.embedded(glosses).T).max(axis=0)  # (values,): each value's closest phrase
    first, second = np.argsort(-best)[:2]
    if best[first] >= GLOSS_COSINE and best[first] - best[second] >= GLOSS_MARGIN and \
            valid(props[name], values[first]):
        return {**args, name: values[first]}
    return args


ELSEWHERE = 0.05  # another character's action this much closer (cosine), with more of its words: not ours


def elsewhere(engine: DialogueEngine, turn: Turn, ev: Evidence, vecs: np.ndarray, args: dict | None = None) -> bool:
    """The line asks for another character's action ("send a letter" to the ferryman, whose ferry action
    shares only a town's name with it): closer to that action's examples by ELSEWHERE and naming more of its
    declared words than any of the character's own actions' declarations. The character does not declare it, so it
    returns no action. The words of a free-string argument taken (a message, a name) ask nothing of another
    character: "send X a message saying the parcel is on the night train" does not ask for the train."""
    if ev.named:
        return False
    text = turn.text
    for v in (args or {}).values():
        if isinstance(v, str) and len(v) > 1 and v.lower() in text.lower():
            at = text.lower().index(v.lower())
            text = text[:at] + " " + text[at + len(v):]
    said = stems(text)
    ab = book(engine)
    mine = max((len(stems(turn.text) & words) for words in ab.declared(turn.npc).values()), default=0)
    for other in engine.cast.npcs:
        if other.id == turn.npc.id or not other.actions:
            continue
        theirs = ab.declared(other)
        for action, mat in ab.vectors(other):
            if float((vecs @ mat.T).max()) >= ev.cosine + ELSEWHERE and len(said & theirs[action.name]) > mine:
                return True
    return False


def next_best(route: Route, why: str, question: bool = False, offworld_min: float = 0.0) -> Route:
    """A line routed `action` that asks for no action the character declares: the router's next most likely label
    ("how thick is the door that seals the vault?" is a fact question that reads like a request to open it). A
    question for information (`informs`) is a question about the world here (`fact` or `both`): the router's
    `action` mass came from its words sounding like a request, and with the request gone, what is left is the
    question (the grounded answer says "I do not know" when the lore has nothing). `offworld` is held to the
    router's own rule (`router.offworld_min`, or a `self`/`offworld` cue): "My cat has been sneezing" at a vet's
    (development, the clinic) was action 0.65, offworld 0.2, and the character said it did not follow."""
    cues = route.signals.get("cues") or {}
    probs = {k: v for k, v in (route.signals.get("probabilities") or {}).items()
             if k != "action" and (not question or k in ("fact", "both"))
             and (k != "offworld" or offworld_allowed(v, cues, offworld_min))}
    label = max(probs, key=probs.get) if probs else ("fact" if question else "style")
    return Route(label, f"{route.reason}; {why}: {label}", route.signals)


def act(engine: DialogueEngine, turn: Turn) -> None:
    """After routing: find the action the line asks for (none on a forced route). The route becomes `action`, or
    the route of the line's other clause when that one is a question. A line the input guard flagged never acts:
    its refusal or ask is said (nothing reaches the game), an accepted action becomes the deflection."""
    if turn.forced is not None or not turn.npc.actions:
        if turn.route.label == "action":  # no action this character declares: a free reply
            turn.route = next_best(turn.route, "no declared action", informs(engine.cues, turn.text),
                                   engine.router.offworld_min)
        return
    guarded = bool(turn.flags)
    outcome, rest, rest_vec = detect(engine, turn)
    if guarded and outcome is not None:
        rest, rest_vec = "", None  # a flagged line's question is not answered beside it
        if outcome.status == "accepted":
            outcome = None
    turn.action = outcome
    if outcome is None:
        if turn.route.label == "action":
            turn.route = next_best(turn.route, "no declared action asked for", informs(engine.cues, turn.text),
                                   engine.router.offworld_min)
        turn.lap("action_ms")
        return
    flag = outcome.flag()
    if flag:
        turn.flags = [*turn.flags, flag]
    turn.actions = outcome.calls()
    why = f"action {outcome.name} {outcome.status} (score {outcome.score})"
    if rest and rest_vec is not None:
        named = " ".join(v for v in outcome.args.values() if isinstance(v, str))
        if named:  # "Open the north gate, and how old is it?": the question is about what was named
            rest = f"{rest} ({named})"
            rest_vec = engine.embedder.encode([rest])[0]
        hits = engine.retriever.search(turn.index, rest, rest_vec, engine.config.retrieval.k)
        other = engine.router.route(rest, rest_vec, lore_match(hits))
        if other.label in ("fact", "both"):
            turn.route = Route(other.label, f"{why}; and {other.reason}", other.signals)
            turn.question, turn.qvec, turn.unfiltered = rest, rest_vec, hits
            turn.lap("action_ms")
            return
    turn.route = Route("action", why, turn.route.signals)
    turn.lap("action_ms")


def answer(engine: DialogueEngine, turn: Turn) -> bool:
    """Compose's part: an action turn that is not also a question is answered by the action's line alone."""
    if turn.action is None or turn.grounded:
        return False
    turn.output = turn.action.text(turn.npc)
    turn.grounding = {"answer": "action"}
    return True


def finish(engine: DialogueEngine, turn: Turn, tail: str | None) -> str | None:
    """After check: a grounded answer gets the action's line in front of it (the text still to stream too)."""
    if turn.action is None or not turn.grounded or turn.output is None:
        return tail
    turn.output = with_answer(turn.npc, turn.action, turn.output)
    return turn.output if tail is not None else tail


def record_event(engine: DialogueEngine, session: str, npc: str, name: str, content: str) -> None:
    """The game's result of an action (an OpenAI `role: "tool"` message) joins the session's memory as an event."""
    said = " ".join(str(content).split())[:500]
    engine.memory.add(session, npc, f"[event: {name or 'action'}] {said}", "")
