"""Surface cues as data: the built-in English cue file (app/data/cues.yaml) extended by a world's own file.

A cue file maps a category (fact, form, social, action, self, offworld, idk, look, request, inform, answer_types,
number_words) to phrases matched case-insensitively on word boundaries, and `senses` maps a plain word to phrases
that mean it ("fit her in" means "book": the action detector counts the word among the line's); a world's file adds
phrases and may `exclude:` built-in ones (a phone is no anachronism in a modern city). The router, evidence
selection, the action detector and `eterna eval facts` read them here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from retrieval.errors import ConfigError

BUILTIN = Path(__file__).with_name("data") / "cues.yaml"
_CLAUSE_END = re.compile(r"[,.!?:;\u2014-]\s*$")  # what may stand before a phrase that opens a clause
LISTS = ("fact", "form", "social", "personal", "action", "self", "offworld", "idk", "number_words", "fourth_wall",
         "look", "request", "inform", "narration", "courtesy", "choice", "clarify", "ask_frame")
ANSWER_TYPES = ("number", "time", "person", "place")
KEYS = (*LISTS, "answer_types", "senses", "exclude", "language")


def _read(path: Path) -> dict:
    from app.config import _read_yaml

    if not path.is_file():
        raise ConfigError(f"{path}: cue file not found; fix world.cues in the config or remove it to use the "
                          "built-in English cues")
    data = _read_yaml(path)
    if not data:
        raise ConfigError(f"{path}: a cue file is a mapping of categories ({', '.join(LISTS)}) to lists of "
                          "phrases; this one is empty")
    for key, value in data.items():
        if key not in KEYS:
            raise ConfigError(f"{path}: unknown cue category {key!r}; use {', '.join(KEYS)}")
        if key == "language":
            continue
        if key in ("answer_types", "exclude", "senses"):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: {key} must map a {'word' if key == 'senses' else 'category'} to a list "
                                  "of phrases")
            for sub, phrases in value.items():
                allowed = ANSWER_TYPES if key == "answer_types" else LISTS
                if key == "senses":
                    if not isinstance(sub, str) or not re.fullmatch(r"[^\W\d_]+", sub):
                        raise ConfigError(f"{path}: senses.{sub}: a sense is one plain word")
                elif sub not in allowed:
                    raise ConfigError(f"{path}: {key}.{sub}: unknown; use {', '.join(allowed)}")
                _check_list(path, f"{key}.{sub}", phrases)
        else:
            _check_list(path, key, value)
    return data


def _check_list(path: Path, key: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{path}: {key} must be a list of non-empty phrases")
    for v in value:
        try:
            re.compile(v)
        except re.error as e:
            raise ConfigError(f"{path}: {key}: phrase {v!r} is not a valid pattern ({e})") from None


def _union(phrases: list[str]) -> str:
    # longest first, so "how many" wins over "how"
    return "|".join(sorted(set(phrases), key=len, reverse=True))


def _words(phrases: list[str]) -> re.Pattern | None:
    return re.compile(rf"(?<!\w)(?:{_union(phrases)})(?!\w)", re.I) if phrases else None


@dataclass(frozen=True)
class Cues:
    phrases: dict[str, tuple[str, ...]]
    answer_types: dict[str, tuple[str, ...]]
    sources: tuple[str, ...]
    senses: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (plain word, phrases that mean it: "fit her in" = book)

    @classmethod
    def load(cls, world_file: Path | None = None) -> Cues:
        base = _read(BUILTIN)
        lists = {k: list(base.get(k) or []) for k in LISTS}
        types = {k: list((base.get("answer_types") or {}).get(k) or []) for k in ANSWER_TYPES}
        senses = {k: list(v or []) for k, v in (base.get("senses") or {}).items()}
        sources = [str(BUILTIN)]
        if world_file is not None:
            extra = _read(Path(world_file))
            for k in LISTS:
                lists[k] += list(extra.get(k) or [])
            for k, v in (extra.get("answer_types") or {}).items():
                types[k] += list(v or [])
            for k, v in (extra.get("senses") or {}).items():
                senses.setdefault(k, []).extend(v or [])
            for k, v in (extra.get("exclude") or {}).items():
                drop = {p.lower() for p in v or []}
                lists[k] = [p for p in lists[k] if p.lower() not in drop]
            sources.append(str(world_file))
        return cls({k: tuple(v) for k, v in lists.items()}, {k: tuple(v) for k, v in types.items()}, tuple(sources),
                   tuple((k, tuple(v)) for k, v in senses.items() if v))

    def __post_init__(self):
        p = self.phrases
        object.__setattr__(self, "_re", {
            "fact": re.compile(rf"(?<!\w)(?:{_union(p['fact'])})(?!\w)|\?", re.I) if p["fact"] else re.compile(r"\?"),
            "form": _words(p["form"]),
            "social": re.compile(rf"^\W*(?:{_union(p['social'])})(?!\w)", re.I) if p["social"] else None,
            "action": re.compile(rf"^\s*\*?\s*(?:I\s+(?:{_union(p['action'])})\w*\b|\*[^*]+\*\s*$)", re.I)
            if p["action"] else re.compile(r"^\s*\*[^*]+\*\s*$"),
            "personal": _words(p.get("personal", ())),  # the character's own tastes and life: small talk
            "self": _words(p["self"]),
            "offworld": _words(p["offworld"]),
            "idk": _words(p["idk"]),
            "fourth_wall": _words(p.get("fourth_wall", ())),
            "look": _words(p.get("look", ())),  # a scene's "look around": the director narrates
            "request": _words(p.get("request", ())),  # a request for an action (app/action_detect.py)
            "inform": _words(p.get("inform", ())),
            "narration": _words(p.get("narration", ())),  # ... unless the line tells of the past
            "courtesy": _words(p.get("courtesy", ())),  # "Excuse me": shaped like a request, asks for nothing
            "choice": _words(p.get("choice", ())),  # "whatever you think": a choice left to the character
            "clarify": _words(p.get("clarify", ())),  # "like actual degrees": more of the question before it
            "ask_frame": _words(p.get("ask_frame", ())),  # "tell me in three words": how it asks, not what
            "number": re.compile(rf"\d|(?<!\w)(?:{_union(p['number_words'])})(?!\w)", re.I) if p["number_words"]
            else re.compile(r"\d"),
        })
        object.__setattr__(self, "_types", {k: _words(list(v)) for k, v in self.answer_types.items() if v})
        object.__setattr__(self, "_senses", tuple((w, _words(list(v))) for w, v in self.senses))

    def meant(self, text: str) -> set[str]:
        """The plain words that phrases of `text` mean (`senses`): "can you fit her in" → {"book", ...}."""
        return {w for w, rx in self._senses if rx.search(text)}

    def find(self, category: str, text: str) -> str | None:
        """The first matching phrase of a category in `text`, or None."""
        rx = self._re[category]
        m = rx.search(text) if rx is not None else None
        return m.group(0) if m else None

    def without(self, categories: tuple[str, ...], text: str) -> str:
        """`text` without every phrase of the categories ("Tell me in three words how many ..." less `ask_frame` is
        "how many ..."), its spaces tidied."""
        for category in categories:
            rx = self._re.get(category)
            if rx is not None:
                text = rx.sub(" ", text)
        text = re.sub(r"\s+([,.;:!?])", r"\1", re.sub(r"\s{2,}", " ", text))
        text = re.sub(r"([!?])\.(?!\.)", r"\1", re.sub(r"[,;:]+(?=[.!?]|$)", "", text))  # "first? ." is "first?"
        return text.strip(" ,;:-")

    def answer_type(self, question: str, *, opens: bool = False) -> str | None:
        """number | time | person | place, from the question's wording; None when it does not say. `opens`: only a
        phrase that opens the line or a clause of it ("hey, who was your captain?", not "everyone who is counting
        on me"), so the line asks it."""
        best = None
        for kind, rx in self._types.items():
            for m in rx.finditer(question):
                if opens and question[:m.start()].strip() and not _CLAUSE_END.search(question[:m.start()]):
                    continue
                if best is None or m.start() < best[1] or (m.start() == best[1] and len(m.group(0)) > best[2]):
                    best = (kind, m.start(), len(m.group(0)))
                break
        return best[0] if best else None
