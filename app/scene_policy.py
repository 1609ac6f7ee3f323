"""Who answers a line in a scene: the addressee a player names, the impersonation a player types, and the responder
policy (a registry, `RESPONDERS`) that picks a character when nobody is named.

Addressing reads the line against each character's aliases: its id, its full name, and each capitalised word of
its name that no other character in the scene shares ("Ruiz", "Ana"), with a few English abbreviations written
out ("Dr." is also "Doctor"). A line opening with an alias and a colon ("Ana: I confess ...") impersonates that
character: it stays the player's line. An alias before a comma at the start, or after a comma at the end, is a
vocative ("Ana, ..."; "..., Ana?"); otherwise the first character named is addressed.

    policy = RESPONDERS.get("knowledge")   # the default
    npc, why = policy(scene_line)          # a `Line`: the text, its route, each character's scoped evidence

A team plugs in its own policy with `@register_responder("name")` and `Scene(..., policy="name")`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from retrieval.registry import Registry
from retrieval.text import FUNCTION_WORDS, NAME_JOINERS

if TYPE_CHECKING:
    from app.config import NpcSpec
    from app.grounding import Evidence

# English abbreviations of forms of address, written out too (a player types either)
# (and the English of a few Spanish ones, accents off), so "Captain, ..." finds a character named "Capitán ..."
_EXPANSIONS = {"dr": "Doctor", "capt": "Captain", "cpt": "Captain", "sgt": "Sergeant", "lt": "Lieutenant",
               "st": "Saint", "prof": "Professor", "fr": "Father", "sr": "Sister", "br": "Brother",
               "capitan": "Captain", "doctora": "Doctor", "padre": "Father", "hermano": "Brother",
               "hermana": "Sister", "fray": "Brother", "sor": "Sister", "maestro": "Master", "teniente": "Lieutenant",
               "sargento": "Sergeant", "senor": "Sir", "senora": "Madam"}
_WORD = re.compile(r"[^\W\d_][\w'’.-]*", re.U)


def aliases(npcs: list[NpcSpec], common: frozenset[str] = frozenset()) -> dict[str, list[str]]:
    """Each character's aliases, longest first: id, full name, and the words of its id and the capitalised words of
    its name (abbreviations also written out) that no other character here shares. Function words, name joiners and
    `common` words (lower-cased: words found in much of the world's lore, such as the place's own name) never
    count."""
    words: dict[str, set[str]] = {}
    for n in npcs:
        own = {w for w in n.id.split("_") if len(w) >= 3} if "_" in n.id else set()
        for w in _WORD.findall(n.name):
            w = w.rstrip(".")
            if fold(w).lower() in _EXPANSIONS:
                own |= {w, _EXPANSIONS[fold(w).lower()]}
            # a possessive ("X's keeper") names someone else; short or function words name nobody
            elif len(w) >= 3 and w[0].isupper() and not re.search(r"['’]s$", w) \
                    and w.lower() not in FUNCTION_WORDS | NAME_JOINERS:
                own.add(w)
        words[n.id] = {w for w in own if w.lower() not in common}
    out = {}
    for n in npcs:
        others = set().union(*(words[m.id] for m in npcs if m.id != n.id))
        names = {n.id, n.id.replace("_", " "), n.name} | (words[n.id] - others)
        out[n.id] = sorted(names, key=lambda a: (-len(a), a))
    return out


def fold(text: str) -> str:
    """Accents off ("Capitán" -> "Capitan"): a player types either. Length kept for Latin letters."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def common_words(texts: list[str], share: float = 0.1) -> frozenset[str]:
    """Lower-cased words found in more than `share` of `texts` (the lore's chunks): a place's name, not a
    character's."""
    df: dict[str, int] = {}
    for t in texts:
        for w in {w.lower() for w in _WORD.findall(t)}:
            df[w] = df.get(w, 0) + 1
    return frozenset(w for w, c in df.items() if c > share * len(texts))


def _pattern(alias: str) -> re.Pattern:
    alias = fold(alias)
    # ids and full names match in any case; a single capitalised name word only as written (a name, not a noun)
    flags = re.I if (alias.islower() or " " in alias) else 0
    return re.compile(rf"(?<![\w'’]){re.escape(alias)}(?![\w'’])", flags)


@dataclass(frozen=True)
class Addressing:
    """What the line says about who it is for: `npc` named (None: nobody), `how` (vocative | named | none), and the
    character it impersonates, if it opens with a character's alias and a colon."""

    npc: str | None
    how: str
    impersonates: str | None = None


class Addresser:
    """Finds the character a line names among a scene's characters (see the module's docstring)."""

    def __init__(self, npcs: list[NpcSpec], common: frozenset[str] = frozenset()):
        self.aliases = aliases(npcs, common)
        self._patterns = {npc: [_pattern(a) for a in names] for npc, names in self.aliases.items()}

    def _at(self, text: str) -> list[tuple[int, int, str]]:
        """(start, end, npc) of every alias found, earliest first, longest at the same start."""
        found = []
        for npc, pats in self._patterns.items():
            for p in pats:
                found += [(m.start(), m.end(), npc) for m in p.finditer(text)]
        return sorted(found, key=lambda x: (x[0], -x[1]))

    def read(self, text: str) -> Addressing:
        text = fold(text)
        found = self._at(text)
        imp = next((npc for s, e, npc in found if s == len(text) - len(text.lstrip(" \"'“*"))
                    and re.match(r"\s*:", text[e:])), None)
        if imp is not None:  # "Ana: I confess ..." is the player speaking, never the character
            rest = [(s, e, npc) for s, e, npc in found if npc != imp and s > text.index(":")]
            named = self._vocative(text[text.index(":") + 1:], self._at(text[text.index(":") + 1:]))
            if named:
                return Addressing(named, "vocative", imp)
            return Addressing(rest[0][2] if rest else None, "named" if rest else "none", imp)
        named = self._vocative(text, found)
        if named:
            return Addressing(named, "vocative")
        return Addressing(found[0][2], "named") if found else Addressing(None, "none")

    @staticmethod
    def _vocative(text: str, found: list[tuple[int, int, str]]) -> str | None:
        """An alias opening the line before a comma or '!' ("Ana, ..."; "Hey Ana, ..."), or closing it after a
        comma ("..., Ana?")."""
        head = text.lstrip(" \"'“*")
        off = len(text) - len(head)
        for s, e, npc in found:
            before = text[off:s].strip().lower()
            if (not before or before in ("hey", "oi", "hello", "hi", "well", "so", "and", "now", "ah", "oh", "please",
                                         "excuse me", "good evening", "good morning", "good day")) \
                    and re.match(r"\s*[,!]", text[e:]):
                return npc
        for s, e, npc in found:  # "Tell me, Ana, what ..."
            if re.search(r",\s*$", text[:s]) and re.match(r"\s*,", text[e:]):
                return npc
        tail = text.rstrip(" \"'”*?.!")
        for s, e, npc in reversed(found):
            if e == len(tail) and re.search(r",\s*(?:(?:my )?(?:dear|good|old) )?$", text[:s]):
                return npc
        return None


@dataclass
class Line:
    """What a responder policy sees of one unaddressed line: the text, its route, the characters who may answer
    (the director is not one of them), each one's scoped evidence (empty: its "I do not know" gate shut or nothing
    found), who spoke to the player last, and who the line impersonates."""

    text: str
    route: str
    candidates: list[str]
    evidence: Callable[[str], list[Evidence]]
    last: str | None = None
    impersonates: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    asks: Callable[[str], float] = lambda npc: 0.0  # how closely the line asks for one of npc's declared actions


RESPONDERS: Registry[Callable[[Line], tuple[str, str]]] = Registry("scene responder policy")


def register_responder(name: str):
    def deco(fn):
        return RESPONDERS.add(name, fn)
    return deco


@register_responder("knowledge")
def knowledge_policy(line: Line) -> tuple[str, str]:
    """A fact question goes to the character whose own scope answers it best (its best evidence score; a shut
    "I do not know" gate scores nothing); a request for an action, to the character whose declared actions it
    matches best; small talk, or a fact nobody here knows, to the character the player
    talked with last (else the first of the scene). (npc, why)."""
    pool = [n for n in line.candidates if n != line.impersonates] or line.candidates
    fallback = line.last if line.last in pool else pool[0]
    if line.route in ("fact", "both"):
        for npc in pool:
            ev = line.evidence(npc)
            line.scores[npc] = round(ev[0].score, 4) if ev else 0.0
        knowers = [n for n in pool if line.scores[n] > 0]
        if knowers:
            best = max(knowers, key=lambda n: (line.scores[n], n == line.last))
            return best, f"its own lore answers best ({line.scores[best]})"
        return fallback, "nobody here knows it: " + ("the last to speak" if fallback == line.last else "first")
    if line.route == "action":  # a request: the character whose declared actions it matches best
        for npc in pool:
            line.scores[npc] = round(line.asks(npc), 4)
        best = max(pool, key=lambda n: (line.scores[n], n == line.last))
        if line.scores[best] > 0:
            return best, f"its declared actions match best ({line.scores[best]})"
    return fallback, "small talk: " + ("the last to speak" if fallback == line.last else "first of the scene")


@register_responder("last")
def last_speaker_policy(line: Line) -> tuple[str, str]:
    """A baseline: whoever spoke to the player last answers (else the first of the scene), knowledge unseen."""
    pool = [n for n in line.candidates if n != line.impersonates] or line.candidates
    return (line.last if line.last in pool else pool[0]), "the last to speak"
