"""The fact linter: world facts (names and numbers of the lore) found inside style data, where they do not belong.

Style sets teach form; facts live in the lore index, so a reply that recites them teaches the adapter to state facts
without evidence. Candidate facts are extracted from the lore text with two explainable rules:
- names: runs of capitalised words of two letters or more (joined by de, del, la, of, the, van, von), not counting
  the first word of a sentence or list item; markdown headings (title case) are skipped, and so are months,
  weekdays and capitalised function words (It, The, On...), and a one-word name that the lore also writes in
  lower case (Letter / letter) is a common word, not a name;
- numbers: runs of two or more digits (years, counts, dates).
A style reply is flagged when it contains one of those terms as the lore writes it (case-sensitive, whole words).
Terms that the character's own system prompt already states (its name, the world's name) are exempt: the adapter
sees them at run time anyway.
"""

from __future__ import annotations

import re
from typing import Iterable

_SPLIT = re.compile(r"(?<=[.!?:;])\s+|\n+")
_LEAD = re.compile(r"^[\s#>*\-+\d.()\"'“‘«¿¡]*")
_WORD = r"[A-ZÀ-ÖØ-Þ][\w'’-]+"
_NAME = re.compile(rf"{_WORD}(?:\s+(?:(?:de|del|la|of|the|van|von)\s+)?{_WORD})*")
_NUMBER = re.compile(r"(?<![\w.,])\d{2,}(?![\w])")
STOP = frozenset("""I I'm I'll I've I'd A An The It It's He She We They You On In At Of To By For With From And But Or
Not No Yes Let This That These Those There Here What When Where Who Why How If So Ex De January
February March April May June July August September October November December Monday Tuesday
Wednesday Thursday Friday Saturday Sunday Mr Mrs Ms Dr Sir OK""".split())


def extract_facts(texts: Iterable[str]) -> set[str]:
    """Candidate fact terms (names and 2+ digit numbers) of the lore texts."""
    terms: set[str] = set()
    lower: set[str] = set()  # words the lore also writes in lower case: common words, not names
    for text in texts:
        prose = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        terms.update(_NUMBER.findall(prose))
        lower.update(re.findall(r"\b[a-zà-ÿ][\w'’-]*", prose))
        for sentence in _SPLIT.split(prose):
            start = _LEAD.match(sentence).end()
            for m in _NAME.finditer(sentence):
                name = m.group(0)
                if m.start() == start:  # the sentence's first word is capitalised anyway: drop it
                    name = name.split(None, 1)[1] if " " in name else ""
                    name = re.sub(r"^(?:(?:de|del|la|of|the|van|von)\s+)", "", name)
                name = re.sub(r"['’]s$", "", name)  # possessive: Anna's -> Anna
                if name and name not in STOP and name.removesuffix("s") not in STOP:
                    terms.add(name)
    return {t for t in terms if " " in t or t.lower() not in lower}


class FactLinter:
    """Finds lore terms in a text. `exempt`: texts (e.g. the system prompt) whose terms are not flagged."""

    def __init__(self, lore: Iterable[str], exempt: Iterable[str] = ()):
        exempt_text = "\n".join(exempt)
        self.terms = sorted(t for t in extract_facts(lore) if not _find(t, exempt_text))
        alternatives = "|".join(re.escape(t) for t in sorted(self.terms, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<![\w])(?:{alternatives})(?![\w])") if self.terms else None

    def find(self, text: str) -> list[str]:
        """The lore terms in text, in order of first appearance, each once."""
        if self._pattern is None:
            return []
        return list(dict.fromkeys(m.group(0) for m in self._pattern.finditer(text)))


def _find(term: str, text: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(term)}(?![\w])", text) is not None
