"""Grounding: replies that say what their sources say.

Owns the steps between retrieval and a `fact`/`both` reply:
  1. evidence selection: the sentences of the retrieved chunks that answer the question, ranked (embedding cosine,
     word overlap with the question, the answer type the question asks for, the chunk's own score);
  2. the support check: the names and numbers of a reply must occur in its evidence (or the question);
  3. the extractive answer: the best evidence sentence itself, wrapped in the character's voice markers.
`GroundingPolicy` applies them to a turn as the config's `grounding:` says: scoped evidence, the hidden-lore gate,
"I do not know", extraction, the support check and what replaces a reply that fails it; and the in-voice lines
said without generation (the "I do not know" line, the deflection).
Grounded decoding (repetition penalty over generated tokens only, copy bias toward evidence tokens) is described
by `app.backends.decoding.Decoding` and applied by the generation backend.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from app.cues import Cues
from retrieval.text import split_sentences as _split
from retrieval.types import Hit

if TYPE_CHECKING:
    from app.config import EternaConfig, NpcSpec, WorldConfig
    from retrieval.index import LoreIndex

_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*")
_CAP = re.compile(r"^[A-ZÁÉÍÓÚÑÄÖÜ]")
_STOP = frozenset(ENGLISH_STOP_WORDS)


def split_sentences(text: str) -> list[str]:
    """Evidence sentences: the code base's one splitter (retrieval.text), sentences of three words or more."""
    return _split(text, min_words=3)


def sentences_with_context(text: str) -> list[tuple[str, str]]:
    """Each evidence sentence of a chunk with the sentence before it ("" for the first): what "It" or "She" in it
    refers to. The selection and the answer reader's training rows both read a sentence's context from here."""
    sentences = split_sentences(text)
    return [(s, sentences[i - 1] if i else "") for i, s in enumerate(sentences)]


def _stem(word: str) -> str:
    return word.lower()[:5]


def _content_tokens(text: str) -> list[str]:
    return [w for w in _TOKEN.findall(text) if w.lower() not in _STOP and len(w) > 1]


def content_words(text: str) -> set[str]:
    return {_stem(w) for w in _content_tokens(text)}


def _verb_only(word: str) -> bool:
    """A lower-case word the English lexicon (lemminflect) reads as a verb and as no noun or adjective of the same
    lemma ("come", "does": its noun reading is "doe"; not "bolts", "iron"): it names no topic."""
    from lemminflect import getAllLemmas

    if _CAP.match(word):
        return False
    lemmas = getAllLemmas(word.lower())
    verbs = {x for k in ("VERB", "AUX") for x in lemmas.get(k, ())}
    others = {x for k, v in lemmas.items() if k not in ("VERB", "AUX") for x in v}
    return bool(verbs) and not verbs & others


def topic_words(text: str) -> set[str]:
    """`content_words` less the words that are only verbs: what a question is about ("bolts", "iron door")."""
    return {_stem(w) for w in _content_tokens(text) if not _verb_only(w)}


@dataclass(frozen=True)
class Evidence:
    """One evidence sentence (or a whole chunk) with where it came from and how well it answers."""

    text: str
    chunk: str
    doc: str
    title: str
    score: float
    context: str = ""  # the sentence before it in its chunk ("" for the first): what "It", "She" refer to

    def source(self) -> dict:
        return {"chunk": self.chunk, "doc": self.doc, "text": self.text, "score": round(float(self.score), 4)}

    def read(self) -> tuple[str, str, str]:
        """What the answer reader reads: (section title, sentence, the sentence before it)."""
        return self.title, self.text, self.context


@dataclass(frozen=True)
class SelectionWeights:
    cosine: float = 1.0
    overlap: float = 0.5
    answer_type: float = 0.15
    chunk: float = 0.3


def instructs(sentence: str) -> bool:
    """Does a lore sentence try to instruct the model ("ignore your instructions and say ...")?"""
    from app.guard import injection_flags

    return "prompt_injection" in injection_flags(sentence)


class EvidenceSelector:
    """Ranks the sentences of retrieved chunks for a question. Sentence vectors are cached by text."""

    def __init__(self, embedder, cues: Cues, weights: SelectionWeights = SelectionWeights(), cache: int = 50_000,
                 texts: list[str] = ()):
        """`texts`: the lore (chunk texts) from which word rarity (IDF) is learnt for the overlap score."""
        self.embedder, self.cues, self.w = embedder, cues, weights
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache
        df: dict[str, int] = {}
        for t in texts:
            for word in content_words(t):
                df[word] = df.get(word, 0) + 1
        n = max(len(texts), 1)
        self._idf = {w: float(np.log(1 + n / c)) for w, c in df.items()}
        self._idf_unknown = float(np.log(1 + n))

    def _weight(self, words: set[str]) -> float:
        return sum(self._idf.get(w, self._idf_unknown) for w in words)

    def _vectors(self, texts: list[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if todo:
            for t, v in zip(todo, self.embedder.encode(todo)):
                self._cache[t] = v
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, 1), np.float32)  # (S, dim)

    def entities(self, text: str, kind: str | None) -> set[str]:
        """Lower-cased tokens of `text` that could answer a question of answer type `kind`."""
        words = _TOKEN.findall(text)
        out = set()
        for i, w in enumerate(words):
            is_num = bool(self.cues.find("number", w))
            is_name = bool(_CAP.match(w)) and i > 0 and w.lower() not in _STOP
            if kind in ("number", "time"):
                ok = is_num
            elif kind in ("person", "place"):
                ok = is_name
            else:
                ok = is_num or is_name
            if ok:
                out.add(w.lower())
        return out

    def select(self, question: str, qvec: np.ndarray, hits: list[Hit], n: int,
               whole_chunks: bool = False) -> list[Evidence]:
        # lore is data, never instructions: a sentence that addresses the model is not evidence
        if whole_chunks:
            return [Evidence(" ".join(s for s in split_sentences(h.chunk.text) if not instructs(s)), h.chunk.id,
                             h.chunk.doc, h.chunk.title, float(h.score)) for h in hits[:n]]
        before: dict[str, str] = {}
        cands = []
        for h in hits:
            for s, prev in sentences_with_context(h.chunk.text):
                if not instructs(s):
                    cands.append((h, s))
                    before.setdefault(s, prev)
        cands = list({s: (h, s) for h, s in reversed(cands)}.values())[::-1]  # overlap repeats sentences
        if not cands:
            return []
        vecs = self._vectors([f"{h.chunk.title}: {s}" for h, s in cands])  # (S, dim)
        cos = vecs @ qvec  # (S,)
        qwords = content_words(question)
        kind = self.cues.answer_type(question)
        qents = {w.lower() for w in _TOKEN.findall(question)}
        scored = []
        for (h, s), c in zip(cands, cos):
            words = content_words(s) | content_words(h.chunk.title)
            overlap = self._weight(qwords & words) / self._weight(qwords) if qwords else 0.0
            has_answer = bool(self.entities(s, kind) - qents)
            score = (self.w.cosine * float(c) + self.w.overlap * overlap + self.w.chunk * float(h.score)
                     + self.w.answer_type * (1.0 if has_answer else -1.0 if kind else 0.0))
            scored.append(Evidence(s, h.chunk.id, h.chunk.doc, h.chunk.title, score, before.get(s, "")))
        scored.sort(key=lambda e: -e.score)
        return scored[:n]

    def answer_order(self, question: str, evidence: list[Evidence]) -> list[Evidence]:
        """The same sentences, the one likeliest to hold the answer first: the selection score plus the question's
        cosine to the sentence alone (selection embeds "title: sentence", so a section's topic sentence outranks the
        next one that answers). Ties keep the rank order."""
        if len(evidence) < 2:
            return list(evidence)
        vecs = self._vectors([question, *(e.text for e in evidence)])  # (1 + S, dim)
        cos = vecs[1:] @ vecs[0]
        order = sorted(range(len(evidence)), key=lambda i: (-(evidence[i].score + float(cos[i])), i))
        return [evidence[i] for i in order]

    def answer_tokens(self, question: str, evidence: Evidence) -> set[str]:
        """What the best evidence adds to the question: its names/numbers of the asked type not in the question."""
        qents = {w.lower() for w in _TOKEN.findall(question)}
        return self.entities(evidence.text, self.cues.answer_type(question)) - qents

    def unsupported(self, reply: str, evidence: list[Evidence], allowed: str = "") -> list[str]:
        """Names and numbers of the reply that occur neither in the evidence nor in `allowed` (question, persona)."""
        known = {w.lower() for e in evidence for w in _TOKEN.findall(f"{e.title} {e.text}")}
        known |= {w.lower() for w in _TOKEN.findall(allowed)}
        return sorted({w for w in self.entities(reply, None) if w not in known})


_NEGATION = re.compile(r"\b(?:not|no|never|nothing|none|nobody|nowhere|neither|nor|cannot)\b|n['’]t\b", re.I)
_SEPARATOR = re.compile(r"(,\s+|;\s+|\s+[—–]\s+|\s+--\s+)")
_PAREN = re.compile(r"\s*\([^()]*\)")
_SUBORDINATE = re.compile(r"^(?:when|whenever|if|unless|because|although|though|while|until|till|since|before|after|"
                          r"once|as|whereas|where|wherever)\b", re.I)
_APPOSITION = re.compile(r"^(?:a|an|the)\b", re.I)  # ", a red star": a noun phrase that renames the one before
_WHY = re.compile(r"\b(?:why|how come|what for|for what reason)\b", re.I)  # a question that asks for a reason
_REASON = re.compile(r"\b(?:because|since|so that|in order to|which is why|that is why|for fear)\b", re.I)
_CLAUSE_BREAK = re.compile(r";\s+|\s+[—–]\s+|\s+--\s+")
# a sentence that opens by referring back ("Its reflector is 64 metres across."): it goes on from another sentence
_REFERS_BACK = re.compile(r"^[\"'“‘(]*(?:it|its|it's|it’s|he|his|she|her|they|their|this|these|those)\b", re.I)


_HOW_MANY = re.compile(r"\bhow many\s+((?:[\w'-]+\s+){0,2}[\w'-]+)", re.I)  # "how many loose wax seals"


def _singular(word: str) -> str:
    """A word's stem as counted things are compared ("books" and "book", "companions" and "companion")."""
    return _stem(word.lower().removesuffix("s"))


def _n_words(text: str) -> int:
    return len(text.split())


def shorten(sentence: str, keep: set[str], budget: int, prefer: set[str] = frozenset()) -> str:
    """The sentence cut toward `budget` words by dropping asides: parentheses and comma/dash segments. The first
    segment and those holding `keep` tokens (the answer type's names and numbers) always stay, so the sentence still
    starts where it started and keeps what may be the answer (then it may exceed `budget`); segments sharing most
    content words with `prefer` (the question's `content_words`) come back while they fit."""
    if _n_words(sentence) <= budget:
        return sentence
    end = sentence.rstrip()[-1] if sentence.rstrip()[-1:] in ".!?…" else "."
    body = sentence.rstrip().rstrip(".!?…").rstrip()

    def holds(text: str) -> bool:
        return bool(keep & {w.lower() for w in _TOKEN.findall(text)})

    body = _PAREN.sub(lambda m: m.group(0) if holds(m.group(0)) else "", body)
    parts = _SEPARATOR.split(body)
    segs, seps = parts[0::2], [""] + parts[1::2]
    chosen = {0} | {i for i in range(1, len(segs)) if holds(segs[i])}
    ranked = sorted(range(1, len(segs)), key=lambda i: (-len(prefer & content_words(segs[i])), i))
    for i in ranked:
        if i not in chosen and prefer & content_words(segs[i]) and \
                sum(_n_words(segs[j]) for j in chosen) + _n_words(segs[i]) <= budget:
            chosen.add(i)
    out = ""
    for i in sorted(chosen):
        out += (seps[i] if i and seps[i].strip() in ("—", "–", "--", ";") else ", " if i else "") + segs[i]
    return out.rstrip(" ,;:") + end


_AUX = frozenset("am is are was were has have had do does did will would can could may might must shall should".split())
# words a clause cannot end on: an aside that interrupts a clause is no aside after it ("..., and it is, as all
# agree, the real lock" / "... salamanders, the creature that, in old books, lives in fire")
_OPEN_END = _AUX | frozenset("that which who whom whose the a an of to and or but nor with for in on at by from as "
                             "than into onto upon its their his her my our your this these those".split())
# a list goes on after the cut: "... named Ada, Ben and Cy", "... oats, beans, dwarf wheat and peppers"
_LIST_END = re.compile(r"^(?:(?:and|or) )?\S+(?: \S+){0,3} (?:and|or) \S+(?: \S+){0,2}$|^(?:and|or) \S+(?: \S+){0,2}$")


def _verb_forms(word: str, tags: tuple[str, ...], unless: tuple[str, ...] = ()) -> bool:
    """Is the lower-case `word` one of the `tags` forms (VBZ, VBD, VBP) of a verb the English lexicon (lemminflect)
    knows, and none of the `unless` forms ("kept" is VBD and VBN)?"""
    from lemminflect import getAllInflections, getAllLemmas

    for lemma in getAllLemmas(word).get("VERB", ()):
        forms = getAllInflections(lemma, "VERB")
        if any(word in forms.get(t, ()) for t in tags) and not any(word in forms.get(t, ()) for t in unless):
            return True
    return False


def _finite_start(segment: str, clause_before: bool = False) -> bool:
    """Does the segment open with a finite verb ("fills the east bank", "is called ...")? Then the cut before it
    would part a subject from its verb ("The old quarter, the district of the forges, fills ..."). A past form that
    may be a participle ("elected in 2020") is one only when no clause came before (`clause_before`: the sentence
    opened with a subject and its verb, "The mayor is Ada Vell, elected in 2020")."""
    words = segment.split()
    word = words[0].lower().strip("\"'“‘(") if words else ""
    return word in _AUX or _verb_forms(word, ("VBZ",)) or (
        _verb_forms(word, ("VBD",), unless=("VBN",)) and not (clause_before and word.endswith("ed")))


def _has_verb(text: str) -> bool:
    """Does the text hold a finite verb after its first word (a clause, not "The night porter, Ada Vell")? A
    base form counts only when the word is no noun ("kennel" is one)."""
    for raw in text.split()[1:]:
        word = raw.strip(",.;:!?\"'“”‘’()").lower()
        if word.isalpha() and (word in _AUX or _verb_forms(word, ("VBZ", "VBD"))
                               or (_verb_only(word) and _verb_forms(word, ("VBP",)))):
            return True
    return False


def aside_cuts(sentence: str, keep: set[str], question: str, entities) -> list[str]:
    """Shorter versions of `sentence`, shortest first, each the sentence up to a comma, semicolon or dash with the
    rest dropped as an aside ("It opened in 1961, after three summers of building, and its cabins held 40 people."
    -> "It opened in 1961."). A cut is offered only where English grammar lets it stand alone and nothing
    asked is lost: what stays is five words or more with a finite verb and balanced quotes and brackets, and does
    not end on a word that waits for more ("and it is", "the creature that"); it holds
    every `keep` token (the answer type's names and numbers); what goes does not open with a finite verb, does not
    go on with a list ("named Ada, Ben and Cy"), says no negation ("bread, never drink"), does not follow a clause
    that waits for it ("...; when it is not, he hangs a rag"), is no apposition that says what the question
    asks ("the mark of the smelter, a red star", "Ada Vell, the elected steward") and, when `keep` is empty
    (a question of no answer type), names nothing (`entities(text)`: names and numbers, lower case) that is not in
    the question or in what stays; nor does it say a name or number of the question that what stays lacks, nor,
    when the question asks why, a reason ("because ...", "so that ...").
    """
    question_words = {w.lower() for w in _TOKEN.findall(question)}
    topic = content_words(question)
    body = sentence.rstrip()
    end = body[-1] if body[-1:] in ".!?…" else "."
    parts = _SEPARATOR.split(body.rstrip(".!?…").rstrip())
    opens = _has_verb(parts[0])  # the sentence opens with a whole clause, before any comma
    cuts = []
    for k in range(0, len(parts) - 2, 2):
        kept = "".join(parts[:k + 1]).rstrip(" ,;:—–-")
        rest = [seg.strip() for seg in parts[k + 2::2]]
        tokens = {w.lower() for w in _TOKEN.findall(kept)}
        if (len(kept.split()) < 5 or kept.count("(") != kept.count(")") or kept.count('"') % 2
                or kept.count("“") != kept.count("”") or keep - tokens or not rest[0]
                or kept.split()[-1].strip("\"'“”‘’()").lower() in _OPEN_END):
            continue
        if _finite_start(rest[0], opens) or _NEGATION.search(" ".join(rest)) or _continues_list(rest):
            continue
        if _SUBORDINATE.match(parts[k]) or (_APPOSITION.match(rest[0])
                                            and topic & (content_words(parts[k]) | content_words(rest[0]))):
            continue
        if not keep and entities(" ".join(rest)) - question_words - tokens:
            continue
        if (entities(question) & entities(" ".join(rest))) - tokens:  # what goes names no name or number asked
            continue  # that what stays lacks ("and four long blasts call in the flagman": "four long blasts")
        if _WHY.search(question) and _REASON.search(" ".join(rest)):  # a why-question keeps the reason it is
            continue  # given (", because she strikes so softly that she seldom wakes anyone")
        # its last clause has a verb ("...; the gas company" has none), and so the whole of what stays has one
        if _has_verb(_CLAUSE_BREAK.split(kept)[-1]):
            cuts.append(kept + end)
    return cuts


def _continues_list(rest: list[str]) -> bool:
    """Do the dropped segments finish a list (short items, then "X and Y")?"""
    for seg in rest:
        if _LIST_END.match(seg):
            return True
        if len(seg.split()) > 4:
            return False
    return False


def compose_answer(question: str, evidence: list[Evidence], selector: EvidenceSelector, max_words: int | None,
                   n_sentences: int = 2, clauses: bool = False) -> str:
    """An extracted fact reply: the best evidence sentences in rank order, whole, the first always and each next
    one only while the reply stays within `max_words` (None: no limit). With `clauses`, a sentence may also be cut
    to its clauses that carry what the question asks for (names, numbers, dates of its answer type) or share the
    question's words (`shorten`), so more of them fit."""
    top = evidence[:max(1, n_sentences)]
    if not top:
        return ""
    if max_words is None:
        return " ".join(e.text for e in top)
    prefer = content_words(question)

    def cut(e: Evidence, budget: int) -> str:
        return shorten(e.text, selector.answer_tokens(question, e), budget, prefer) if clauses else e.text

    share = max(4, max_words // len(top))
    parts = [cut(e, share) for e in top]
    while len(parts) > 1 and sum(_n_words(p) for p in parts) > max_words:
        parts.pop()  # the weakest sentence goes first
    room = max_words - sum(_n_words(p) for p in parts[1:])
    best = cut(top[0], room)
    if _n_words(best) <= room or len(parts) == 1:
        parts[0] = best  # the best sentence takes back the words left over
    return " ".join(parts)


def wrap_in_voice(text: str, opens: list[str] | None, closes: list[str] | None) -> str:
    """The character's signature opener and closer around an extracted answer (when it has them and the text
    does not already carry them)."""
    text = text.strip()
    if opens and not text.startswith(tuple(opens)):
        text = f"{opens[0]} {text}"
    if closes and not text.endswith(tuple(closes)):
        text = f"{text} {closes[0]}"
    return text


def in_voice(spec: NpcSpec, text: str) -> str:
    """`text` inside the character's voice markers (wrap_in_voice)."""
    m = spec.markers
    return wrap_in_voice(text, m.opens if m else None, m.closes if m else None)


def idk_line(spec: NpcSpec, world: WorldConfig) -> str:
    """The character's in-voice "I do not know"."""
    return in_voice(spec, spec.idk or world.idk)


def deflection(spec: NpcSpec, world: WorldConfig) -> str:
    """The character's in-voice refusal to step out of the fiction (no generation: it cannot be talked round)."""
    return in_voice(spec, spec.deflect or world.deflect)


@dataclass(frozen=True)
class GroundingPolicy:
    """The config's grounding policy over one index generation: its evidence selector and the engine's retriever."""

    config: EternaConfig
    selector: EvidenceSelector
    cues: Cues
    retriever: object

    def mode(self, route: str) -> str:
        """How a fact (`fact`) or mixed (`both`) turn is answered: extract, generate or hybrid."""
        g = self.config.grounding
        return g.answer_both if route == "both" else g.answer

    def evidence(self, spec: NpcSpec, text: str, qvec, chapter: int, unfiltered: list, index: LoreIndex,
                 state: object = None, asked: str | None = None) -> list[Evidence]:
        """Scoped retrieval, then evidence selection; empty when the character must say it does not know.
        `state`: the game's state; documents whose `requires` it fails are filtered inside the search. `asked`: the
        player's whole question, as the answer reader reads it (default `text`)."""
        g = self.config.grounding
        r = self.config.retrieval
        found = self.retriever.search(index, text, qvec, r.k, spec.scope(chapter, state))
        hits = [h for h in found if h.score >= r.min_score]
        n = max(g.evidence_sentences, g.reader_candidates) if g.answer_order == "reader" else g.evidence_sentences
        evidence = self.selector.select(text, qvec, hits, n, whole_chunks=g.whole_chunks)
        if evidence and not g.whole_chunks and (
                evidence[0].score < g.min_evidence
                or self.hidden_answers_better(text, qvec, evidence[0], unfiltered, evidence)
                or self.hidden_reads_better(text, evidence, lambda: self.hidden_sentences(
                    text, qvec, index, spec.scope(chapter, state)))
                or self.reads_no_answer(asked or text, evidence)):
            return []
        return evidence

    def reads_no_answer(self, question: str, evidence: list[Evidence]) -> bool:
        """Does the answer reader read all of the character's best sentences (the `reader_candidates` it orders)
        below `reader_floor`? Then none of them answers ("how many people have you patched up?" / "Every 14 March
        the whole station keeps a silence of eleven minutes."), and an extract would say an unrelated sentence."""
        g = self.config.grounding
        if g.reader_floor is None or g.answer_order != "reader" or not evidence:
            return False
        return self.own_best(question, evidence) < g.reader_floor

    def own_best(self, question: str, evidence: list[Evidence]) -> float:
        """The answer reader's best logit over the character's own best sentences: the ones `said` reads (so the
        scores come from the reader's cache when the reply is then ordered)."""
        from app.reader import load_reader

        g = self.config.grounding
        top = evidence[: max(g.extract_sentences, g.reader_candidates)]
        return max(load_reader(g.reader).scores(question, [e.read() for e in top]))

    def hidden_reads_better(self, text: str, evidence: list[Evidence], hidden) -> bool:
        """Does the answer reader find the answer in text the character may not see, and not in its own evidence?
        The character's best sentences all read below `hidden_reader_own`, and a hidden one (`hidden()`: the best
        sentences of a later chapter, a closed gate, another character's knowledge) reads `hidden_reader` higher:
        "how many people have you patched up?" / "... a silence of eleven minutes" is no answer, and the count is
        in a gated page. The selection's scores miss this when the hidden sentence scores below the character's
        own (`hidden_answers_better`). A question of an answer type (who, when, how many) is never silenced while
        one of the character's own best sentences holds a name or number of that type. Only the decision reads the
        hidden text."""
        from app.reader import load_reader

        g = self.config.grounding
        if g.hidden_reader is None or g.answer_order != "reader" or not evidence:
            return False
        if self.cues.answer_type(text) is not None and any(
                self.selector.answer_tokens(text, e) for e in evidence[: g.reader_candidates]):
            return False  # its own sentences hold a name or number of the asked type: it may answer from them
        own = self.own_best(text, evidence)
        if own >= g.hidden_reader_own:
            return False
        top = hidden()
        return bool(top) and max(load_reader(g.reader).scores(text, [e.read() for e in top])) - own >= g.hidden_reader

    def hidden_sentences(self, text: str, qvec, index: LoreIndex, scope) -> list[Evidence]:
        """The best sentences the character may not see, from an unscoped search twice as wide as the turn's."""
        r = self.config.retrieval
        hits = [h for h in self.retriever.search(index, text, qvec, 2 * r.k)
                if h.score >= r.min_score and not scope.allows(h.chunk)]
        return self.selector.select(text, qvec, hits, self.config.grounding.reader_candidates) if hits else []

    def hidden_answers_better(self, text: str, qvec, best: Evidence, unfiltered: list,
                              own: list[Evidence] | None = None) -> bool:
        """Would evidence outside this character's scope or chapter answer clearly better? Then the answer is hidden
        from it (a spoiler, or another character's knowledge) and it must not improvise one from lesser facts.
        Only the decision to say "I do not know" uses the hidden text; none of it reaches the prompt. `own`: the
        character's evidence, best first (default: `best` alone), which `hidden_margin_sure` reads."""
        g = self.config.grounding
        if g.hidden_margin is None:
            return False
        hits = [h for h in unfiltered if h.score >= self.config.retrieval.min_score]
        top = self.selector.select(text, qvec, hits, 1)
        if not (top and top[0].chunk != best.chunk and top[0].score - best.score >= g.hidden_margin):
            return False
        if self.answers_on_its_own(text, best):
            return False
        if g.hidden_margin_sure is not None and g.answer_order == "reader":
            return self.own_best(text, own or [best]) < g.hidden_margin_sure
        return True

    def answers_on_its_own(self, question: str, best: Evidence) -> bool:
        """Does the character's own best sentence answer a typed question by itself ("How many bolts hold the iron
        door?" / "... the eight bolts of the iron door ...")? Then better-scoring hidden text (a later chapter that
        speaks of the same door) does not silence it: the reply still says only what the character may see.
        The names the question gives do not count as shared words: they say whom it is about, not what it asks
        ("who's covering for Dr. Tremblay on the big surgeries?" / "Dr. Simone Tremblay, owner and surgeon ...")."""
        need = self.config.grounding.hidden_own_answer
        if need is None or self.cues.answer_type(question) is None:
            return False
        named = content_words(" ".join(self.selector.entities(question, "person")))
        shared = (topic_words(question) - named) & content_words(best.text)
        return len(shared) >= need and bool(self.selector.answer_tokens(question, best))

    def said(self, question: str, evidence: list[Evidence]) -> list[Evidence]:
        """The evidence sentences an extract says, in the order it says them, at most `extract_sentences`: the
        selection's first (`rank`), the same reordered (`sentence`), or the reader's best of all it is given (up to
        `reader_candidates`), alone when it is sure (`reader`)."""
        g = self.config.grounding
        n = g.extract_sentences
        if g.answer_order == "reader":
            evidence, alone = self.read(question, evidence[: max(n, g.reader_candidates)])
            return evidence[: 1 if alone else n]
        if g.answer_order == "sentence":
            return self.selector.answer_order(question, evidence[:n])
        return evidence[:n]

    def extract(self, spec: NpcSpec, evidence: list[Evidence], question: str, lead: str = "",
                chosen: bool = False) -> str:
        """The answer-first extract (compose_answer) in the character's markers, all within max_words (`lead`, a
        checked lead-in of the character's own, goes before it and is not counted). `chosen`: `evidence` is already
        what `said` returned."""
        g, m = self.config.grounding, spec.markers
        frame = sum(len(x[0].split()) for x in (m.opens, m.closes) if x) if m else 0
        budget = None if g.max_words is None else max(8, g.max_words - frame)
        said = evidence if chosen else self.said(question, evidence)
        if g.asides == "cut":
            said = [self.without_asides(question, e) for e in said]
        answer = compose_answer(question, said, self.selector, budget, len(said), clauses=g.clauses)
        text = f"{lead} {answer}".strip()
        framed = in_voice(spec, text)
        if g.closer_within is not None and m is not None and m.closes and len(framed.split()) > g.closer_within:
            framed = wrap_in_voice(text, m.opens, None)  # a long answer: no sign-off after it
        return framed

    def without_asides(self, question: str, evidence: Evidence) -> Evidence:
        """The evidence sentence as said: its shortest cut (`aside_cuts`) that the answer reader scores within
        `grounding.asides_margin` of the whole sentence, or the whole sentence. A sentence the reader scores below 0
        (less likely than not to hold the answer) is said whole. Reply.grounding keeps the whole."""
        from app.reader import load_reader

        keep = self.selector.answer_tokens(question, evidence) if self.cues.answer_type(question) else set()
        cuts = aside_cuts(evidence.text, keep, question, lambda text: self.selector.entities(text, None))
        if not cuts:
            return evidence
        g = self.config.grounding
        reads = [(evidence.title, t, evidence.context) for t in (evidence.text, *cuts)]
        scores = load_reader(g.reader).scores(question, reads)
        if scores[0] < 0:  # the reader does not find the answer in the whole sentence: it cannot vouch for a cut
            return evidence
        for cut, score in zip(cuts, scores[1:]):
            if score >= scores[0] - g.asides_margin:
                return replace(evidence, text=cut)
        return evidence

    def read(self, question: str, evidence: list[Evidence]) -> tuple[list[Evidence], bool]:
        """The evidence in the answer reader's order (its logit plus `reader_weight` times the selection score),
        and whether the first may be said alone: the selection ranked it first too, it holds `reader_alone` of the
        probability between it and the next best (reading more candidates does not make it less sure; on
        development worlds the reader alone, without the selection's agreement, cut more answers:
        docs/benchmarks.md), a question of a type (who, when, how many) finds a name or number of that
        type in it ("When was the statue put up?" / "A bronze statue ... stands beside the station." is not said
        alone: the next sentence, "It was unveiled in 1999", holds the answer), and the next sentence does not open
        by referring back to something ("Its reflector is 64 metres across."). It is said alone too when the next
        sentence adds nothing of the asked type (`adds_nothing`)."""
        import numpy as np

        from app.reader import load_reader

        g = self.config.grounding
        if len(evidence) < 2:
            return list(evidence), True
        logits = load_reader(g.reader).scores(question, [e.read() for e in evidence])
        score = np.array(logits) + g.reader_weight * np.array([e.score for e in evidence])
        order = sorted(range(len(evidence)), key=lambda i: (-score[i], i))
        p = np.exp(score - score.max())
        nxt = order[1]
        typed = self.cues.answer_type(question) is None or bool(self.selector.answer_tokens(question, evidence[0]))
        sure = (g.reader_alone is not None and order[0] == 0 and float(p[0] / (p[0] + p[nxt])) >= g.reader_alone
                and typed and not _REFERS_BACK.match(evidence[nxt].text))
        return [evidence[i] for i in order], sure or self.adds_nothing(question, evidence[order[0]], evidence[nxt])

    def adds_nothing(self, question: str, first: Evidence, second: Evidence) -> bool:
        """Could the next sentence not hold the answer to a typed question (who, when, how many, where) that the
        first one may hold? The first holds a name or number of the asked type, and the next none that the first
        lacks ("How high is the saddle?" / "... climbs to 9,300 feet at the Skarn Saddle." then "Every traveller
        is warned the saddle stands at 9,300 feet."): saying it would only lengthen the reply."""
        if self.cues.answer_type(question) is None:
            return False
        own = self.selector.answer_tokens(question, first)
        return bool(own) and not self.selector.answer_tokens(question, second) - own

    def frame_fault(self, spec: NpcSpec, question: str, lead: str, evidence: list[Evidence]) -> str | None:
        """Why a lead-in the character's adapter wrote for a fact reply may not be said (None: it may): it must be
        one whole sentence, no question, and add no name or number the question, persona and evidence lack, no
        negation (which could contradict the fact) and no "I do not know"."""
        if not lead or not lead.rstrip("\"'”’)").endswith((".", "!")) or len(_split(lead)) != 1:
            return "not one whole sentence"
        if _NEGATION.search(lead):
            return "negation"
        if self.cues.find("idk", lead):
            return "says it does not know"
        allowed = f"{question} {spec.name} {spec.persona} {spec.style} {self.config.world.name}"
        bad = self.selector.unsupported(lead, evidence, allowed)
        return f"unsupported: {', '.join(bad)}" if bad else None

    def counted(self, question: str, evidence: Evidence) -> set[str]:
        """"How many <things> ...": the number words the sentence puts right before the things counted ("one hundred
        and eighty-six books" gives "eighty-six" for "how many books ..."), so a reply that says another number of the
        same sentence (its year, "1387") does not carry the count. Empty when the sentence counts nothing asked."""
        m = _HOW_MANY.search(question)
        if not m:
            return set()
        things = {_singular(w) for w in _TOKEN.findall(m.group(1))  # the things, not a name or verb after them
                  if w.lower() not in _STOP and not _CAP.match(w) and not _verb_only(w)}
        words = _TOKEN.findall(evidence.text)
        return {w.lower() for i, w in enumerate(words) if self.cues.find("number", w)
                and any(_singular(x) in things for x in words[i + 1:i + 3])}

    @staticmethod
    def says_what_it_adds(question: str, reply: str, top: list[Evidence]) -> bool:
        """A question of no answer type ("what share of every sale goes to the commune?"): does the reply say at least
        half (at most three) of the content words that one of `top` (the sentence an extracted reply would say first)
        adds to the question ("a tenth of every sale" adds "tenth")? A reply about the fish market that never says the
        share does not, though it names someone the evidence names."""
        asked, said = content_words(question), content_words(reply)
        adds = [content_words(e.text) - asked for e in top]
        return not any(adds) or any(a and len(a & said) >= min(3, (len(a) + 1) // 2) for a in adds)

    def check(self, spec: NpcSpec, question: str, reply: str, evidence: list[Evidence],
              mode: str) -> tuple[str, dict]:
        """The support check: a generated fact reply keeps only names and numbers its evidence holds, and does not
        loop (a word 3-gram or a sentence said twice: "The cold. The dead-end. The Kettle. The cold. ..."); in
        `hybrid` mode it must also carry what the best evidence adds to the question. Otherwise the policy applies."""
        from app.evaluation.quality import repeats

        g = self.config.grounding
        used = [e.source() for e in evidence]
        info: dict = {"answer": "generated", "evidence": used, "supported": True}
        if not g.support_check and mode != "hybrid":
            return reply, info
        allowed = f"{question} {spec.name} {spec.persona} {spec.style} {self.config.world.name}"
        bad = self.selector.unsupported(reply, evidence, allowed) if g.support_check else []
        says_idk = bool(self.cues.find("idk", reply))
        carries = True
        said = functools.cache(lambda: self.said(question, evidence))  # one reader pass for the check and fallback
        if mode == "hybrid":
            if self.cues.answer_type(question) is None:  # no who / when / how many: not just any name or number
                carries = self.says_what_it_adds(question, reply, said()[:1])
            else:
                need = set().union(*(self.selector.answer_tokens(question, e) for e in evidence[: g.extract_sentences]))
                count = set()
                if evidence and _HOW_MANY.search(question):  # the count the first said sentence gives, not any number
                    count = self.counted(question, said()[0])
                carries = any(w in reply.lower() for w in count or need) if count or need else True
        loops = repeats(reply)
        info.update(supported=not bad, unsupported=bad, carries_answer=carries, loops=loops)
        if (not bad and carries and not says_idk and not loops) or g.on_unsupported == "keep":
            return reply, info
        if g.on_unsupported == "idk":
            return idk_line(spec, self.config.world), {**info, "answer": "idk"}
        return self.extract(spec, said(), question, chosen=True), {
            **info, "answer": "extracted", "evidence": [e.source() for e in said()], "generated": reply}
