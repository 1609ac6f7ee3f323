"""An action's arguments taken from the player's words, then validated against the action's JSON Schema.

    args = extract_args(params, "Two water rations, please", exclude={"Nell"})   # {"item": "water ration", "count": 2}

Per parameter, by its schema: an `enum` value found in the words (case-, whitespace- and punctuation-insensitively,
or by a word that only that value has); a number (digits or number words, "a dozen"); a free string from quotes,
then from a proper name, then from the words after "named", "called" or "titled" (a message: quoted text or what
follows a colon, "that", "saying" or "tell him"); a length of time in the parameter's unit ("a quarter of an hour" for
minutes). Every candidate is validated with `jsonschema` on its own: a value outside the schema is treated as not
given, so an argument can never take a value outside its schema however the line is phrased. Nothing here knows any
world.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from itertools import takewhile

from jsonschema import Draft202012Validator

from retrieval.text import ABBREVIATIONS, EVERYDAY, NAME_JOINERS, split_sentences

_UNITS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                     "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()) if i > 1}
_WORDS = {**_UNITS, **_TENS, "a": 1, "an": 1, "single": 1, "couple": 2, "pair": 2, "dozen": 12, "score": 20,
          "hundred": 100, "thousand": 1000, "grand": 1000, "half": 0.5}
_TIMES = ("hundred", "thousand", "grand", "dozen", "score")  # words that multiply the number before them
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:[.,]\d+)?(?![\w])")
_NUMWORD = re.compile(r"\b(?:(?:a|an|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|half)\s+)?"
                      r"(?:(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)(?:[\s-](?:one|two|three|four|"
                      r"five|six|seven|eight|nine))?|zero|one|two|three|four|five|six|seven|eight|nine|ten|eleven|"
                      r"twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen|single|couple|pair|"
                      r"dozen|score|hundred|thousand|grand)\b", re.I)
QUOTED = re.compile(r"[\"“«]([^\"”»]{2,200})[\"”»]|(?<!\w)'((?:[^']|(?<=\w)'(?=\w)){2,200})'(?!\w)")
_NAME = re.compile(r"\b((?:[A-Z]\.\s?)?[A-ZÁÉÍÓÚÑ][\w’'-]+(?:\s+(?:(?:" + "|".join(sorted(NAME_JOINERS)) + r")\s+){0,2}"
                   r"[A-ZÁÉÍÓÚÑ][\w’'-]+)*)")  # (an initial first: "D. Moreno"; "Stella di Lune")
_GREETING = {"g'day", "gday", "hi", "hello", "hey", "hiya", "howdy", "oi", "morning", "evening", "afternoon", "yo",
             "cheers", "ta", "thanks", "righto", "mate", "bro"}
# a title before a name, abbreviated or spelt out ("Mr. Hale" is "Hale", "Captain Ines Vale" is "Ines Vale"; "Mr"
# alone is no name)
_SPELT_TITLES = ("captain colonel major general lieutenant sergeant corporal admiral commander commodore doctor "
                 "professor reverend judge sheriff marshal deputy governor senator mister madam madame miss missus "
                 "sir dame lady lord").split()
_TITLE = re.compile(r"\b(?:(?i:" + "|".join(sorted((a for a in ABBREVIATIONS if "." not in a), key=len, reverse=True))
                    + r")\.?|(?:" + "|".join(t.capitalize() for t in _SPELT_TITLES) + r"))\s+(?=[A-ZÁÉÍÓÚÑ])")
_AFTER = re.compile(r"\b(?:named|called|titled|entitled|under the name(?: of)?|(?:by )?the name of|name of"
                    r"|(?<=\bthe )name(?:['’]s| is| will be| should be)"  # "The name is Ana Ruiz"
                    r"|(?:put|write|book|enter|sign|mark)\s+(?:it|me|us|him|her|them)\s+(?:down\s+)?as)\s+"
                    r"(?:the\s+|a\s+|an\s+|my\s+)?"
                    r"([\w’'-]+(?:\s+[\w’'-]+){0,3})", re.I)
SAYING = re.compile(r"(?:(?<!\bto)(?<!\bto )(?<!\bdear)(?<!\bdear ):"  # ("to: Ada Ruiz" names, it says nothing)
                     r"|(?<!\bis )(?<!\bwas )(?<!['’]s )\bthat"  # ("is that a word?": a demonstrative)
                     r"|(?:^|(?<=[.!?]\s))\W*(?:(?:and|just|then|so|please)\s+)?say(?: that)?"  # ("Just say ...")
                     r"|\bsay(?:ing|in['’]?)"  # ("Say he's better.")
                     r"|(?<=\w)\s+[–—-]{1,2}(?=\s)"  # "telegram to Ada Ruiz - the bells are ready": after a dash
                     r"|\btell (?:him|her|them|em|'em|(?:the|my|your|our) [a-z]+)(?: that)?)\s+"
                     r"[\"“']?([^\"”]{2,400}?)[\"”']?\s*[.!?]?$", re.I)
_LONG = {"message", "note", "text", "words", "letter", "content", "say", "said", "body"}
# a message labelled as one ("msg: bring the horse", "note - feed him twice", "please note he bites"): what follows
LABELLED = re.compile(r"(?:\b(?:msg|message|note|text|words|body|content)(?:\s*[:=]|\s+[–—-])"
                      r"|\b(?:please|pls|plz|also|kindly)\s+(?:make\s+a\s+)?note(?:\s+(?:down\s+)?that)?(?=\s)"
                      r"|\band\s+note\s+that(?=\s))\s*"  # (not "buy bread and note the date")
                      r"[\"“']?([^\"”]{2,400}?)[\"”']?\s*$", re.I)
_STOP = {"the", "a", "an", "of", "to", "and", "or", "in", "on", "at", "for", "my", "your", "me", "please", "i", "you"}
# capitalised words that are never a name: the pronoun I and its contractions ("I'd", "I've")
_PRONOUN = re.compile(r"^I(?:['’](?:d|ve|ll|m))?$")


def norm(text: str) -> str:
    """Lower case, punctuation gone, spaces collapsed: how free strings and enum values are compared."""
    return " ".join(re.sub(r"[^\w\s]|_", " ", str(text).casefold()).split())


_VALIDATORS: dict[str, Draft202012Validator] = {}  # by the schema's canonical JSON


def valid(schema: dict, value: object) -> bool:
    """Does `value` pass `schema` (jsonschema, Draft 2020-12)?"""
    key = json.dumps(schema, sort_keys=True)
    validator = _VALIDATORS.get(key)
    if validator is None:
        validator = _VALIDATORS[key] = Draft202012Validator(schema)
    return validator.is_valid(value)


@lru_cache(maxsize=1)
def _typos() -> dict[str, int]:
    """Number words with one letter dropped or two swapped ("thre", "fiev"), when that is no English word."""
    from lemminflect import getAllLemmas

    out: dict[str, int] = {}
    for w, v in {**_UNITS, **_TENS}.items():
        if len(w) < 4 or not v:
            continue
        for t in {w[:i] + w[i + 1:] for i in range(len(w))} | {w[:i] + w[i + 1] + w[i] + w[i + 2:]
                                                              for i in range(len(w) - 1)}:
            if len(t) >= 4 and t != w and t not in _WORDS and not getAllLemmas(t):
                out[t] = v
    return out


def spans(text: str) -> list[tuple[int, int, float]]:
    """(start, end, value) of each number in `text`, in order: digits ("3", "2.5", "1,200") and number words
    ("twenty-two", "a dozen")."""
    found: list[tuple[int, int, float]] = []
    for m in re.finditer(r"(?<![\w.])[x×](\d{1,3})(?!\w)|(?<![\w.])(\d{1,3})[x×](?!\w)", text, re.I):  # "x4", "4x"
        found.append((m.start(), m.end(), float(m.group(1) or m.group(2))))
    for m in _NUMBER.finditer(text):
        raw = m.group(0)
        raw = raw.replace(",", "") if re.fullmatch(r"-?\d{1,3}(,\d{3})+", raw) else raw.replace(",", ".")
        try:
            found.append((m.start(), m.end(), float(raw)))
        except ValueError:
            continue
    typos = _typos()
    found += [(m.start(), m.end(), float(typos[m.group(0).casefold()])) for m in re.finditer(r"[^\W\d_]{4,}", text)
              if m.group(0).casefold() in typos]
    for m in _NUMWORD.finditer(text):
        if m.group(0).lower() == "one" and ((_PRONOUN_ONE.search(text[:m.start()]) and not
                                              _ONE_COUNTS.search(text[:m.start()]) and not
                                              _ONE_OF.match(text[m.end():])) or
                                             (_THERE.search(text[:m.start()]) and _FREE.match(text[m.end():]))):
            continue  # "the blue one", "that one", "if there is one free": a pronoun, not a number ("just the one
            # tin of tar", "is there one berth", "there is one of us" count)
        parts = re.split(r"[\s-]+", m.group(0).lower())
        halved = re.search(r"\bhalf\s+$", text[:m.start()], re.I) if parts[0] in ("a", "an") else None
        if parts[0] in ("a", "an"):
            parts = parts[1:]  # "a dozen", "a couple": the article is not a number
        if not parts:
            continue
        total, current = 0.0, 0.0
        for p in parts:
            v = _WORDS.get(p)
            if v is None:
                continue
            if p in _TIMES and current:
                current *= v
            elif p == "half" and len(parts) > 1:
                current += 0.5
            else:
                current += v
        total += current
        found.append((halved.start(), m.end(), total / 2) if halved else (m.start(), m.end(), total))  # "half a dozen"
    found += [(m.start(), m.end(), float(m.group(1)) * 1000) for m in re.finditer(r"(?<![\w.])(\d{1,3})k(?!\w)", text)]
    # a number glued to a unit's first letters ("25t", "3d", "2hrs"; not "1st", "4x", "5k", "7pm", "1920s"): the digits
    found += [(m.start(), m.start(2), float(m.group(1))) for m in _GLUED.finditer(text)
              if m.group(2).lower() not in ("st", "nd", "rd", "th", "x", "k", "am", "pm", "s")]
    found.sort()
    merged: list[tuple[int, int, float]] = []
    for n in found:
        said = text[n[0]:n[1]].lower()
        if merged:
            last, between = text[merged[-1][0]:merged[-1][1]].lower(), text[merged[-1][1]:n[0]]
            if said in _TIMES and not between.strip():  # "3 grand", "a couple hundred": one number
                merged[-1] = (merged[-1][0], n[1], merged[-1][2] * _WORDS[said])
                continue
            if not text[n[0]].isdigit() and ((last.endswith("hundred") and 0 < n[2] < 100 and
                                              re.fullmatch(r"\s+and\s+", between, re.I)) or
                                             (last.endswith(("thousand", "grand")) and 0 < n[2] < 1000 and
                                              re.fullmatch(r"\s+(?:and\s+)?", between, re.I))):
                merged[-1] = (merged[-1][0], n[1], merged[-1][2] + n[2])  # "a hundred and twenty": one number
                continue
        merged.append(n)
    return merged


_GLUED = re.compile(r"(?<![\w.])(\d{1,4})([^\W\d_]{1,4})(?!\w)")
_PRONOUN_ONE = re.compile(r"\b(?:the|that|this|which|another|each|every|other)\s+(?:[\w’'-]+\s+){0,2}$", re.I)
_THERE = re.compile(r"\b(?:there\s+is|there['’]s|is\s+there)\s+$", re.I)
_FREE = re.compile(r"\s*(?:[,.!?;]|$)|\s+(?:free|left|available|spare|going|open|empty|vacant)\b", re.I)
_ONE_COUNTS = re.compile(r"\b(?:just|only)\s+the\s+$", re.I)  # "just the one": exactly one
_ONE_OF = re.compile(r"\s+(?!of\b)[^\W\d_]+\s+of\b", re.I)  # "the one tin of tar": one, a measure of a thing


def numbers(text: str) -> list[float]:
    """The numbers in `text` in order (`spans` without the places)."""
    return [v for _, _, v in spans(text)]


# the short and spoken forms of units ("ltrs", "40 k", "30 clicks", "2 nites"; no single letter but "k", which no
# contraction leaves behind as "I'm" does "m"; a letter glued to its number, "25t", is read by _GLUED)
_SAID_UNITS = {"kilometre": ("km", "kms", "k", "klicks", "clicks", "kays"), "litre": ("ltr", "ltrs", "lt", "lts"),
               "night": ("nite", "nites"), "kilogram": ("kg", "kgs", "kilo", "kilos"), "tonne": ("tons", "ton")}

# units of measure: a number said with one measures something, it does not count the things a parameter counts
_MEASURES = {*_SAID_UNITS, *(x for v in _SAID_UNITS.values() for x in v), "g", "gram", "lb", "lbs", "pound", "ml",
             "cm", "mm", "metre", "meter", "kilogramme", "oz", "ounce", "gallon", "l"} - {"nite", "nites", "night"}


def _about(name: str, schema: dict) -> str:
    """What a parameter says of itself: its name (underscores as spaces) and description, normalised."""
    return norm(f"{name.replace('_', ' ')} {schema.get('description') or ''}")


def _unit_words(name: str, schema: dict) -> set[str]:
    """The words that name a number parameter in a line ("berth", "days"): its name's and description's, and the
    short forms of a unit among them ("km", "k" and "clicks" for kilometres)."""
    words = {w for w in _about(name, schema).split()
             if len(w) > 2 and w not in _STOP and w not in _WORDS and w not in ("how", "many", "much", "number")}
    for unit, short in _SAID_UNITS.items():
        if any(w.rstrip("s").replace("er", "re") == unit or w in short for w in words):
            words |= {unit, unit + "s", *short}
    return words


def _number_order(text: str, found: list[tuple[int, int, float]], units: set[str],
                  others: set[str] = frozenset()) -> list[tuple[int, int, float]]:
    """The numbers, the one next to a word that names the parameter first ("one of those slips, berth six": 6),
    then the others in order; a number next to a word that names another number parameter, and nearer to it, is
    not this one's ("gate 14, thirty litres": 14 is the gate's, not the litres')."""
    if not units:
        return found

    def places(said: set[str]) -> list[tuple[int, int]]:  # the words, and units glued to a number ("25t")
        return [(m.start(), m.end()) for m in re.finditer(r"\w+", text)
                if any(norm(m.group(0)) in (u, u + "s", u[:-1] if u.endswith("s") else u) for u in said)] + \
            [m.span(2) for m in _GLUED.finditer(text) if any(u.startswith(m.group(2).lower()) for u in said)]

    measures = places(_MEASURES - units)  # "four 10 kg bags": 10 measures a bag, four counts them

    sized = [(n[0], b) for n in found for a, b in measures if 0 <= a - n[1] <= 1]  # "10 kg": a number, its unit

    def measured(n: tuple[int, int, float]) -> bool:
        return any(a == n[0] for a, _ in sized)

    def reach(n: tuple[int, int, float]) -> int:  # its end, past a measure said right after it ("four 10 kg bags")
        return next((b for a, b in sized if a >= n[1] and not text[n[1]:a].strip()), n[1])

    every = spans(text)

    def gap(n: tuple[int, int, float], words: list[tuple[int, int]], own: bool = True) -> int:  # words between it
        # and the nearest; another's word with a number of its own in between is not near ("for 2, six nights")
        between = [(w[1], n[0]) if w[1] <= n[0] else (reach(n), w[0]) for w in words if w[1] <= n[0] or
                   w[0] >= n[1]]
        between = [(a, b) for a, b in between if own or not any(a <= m[0] and m[1] <= b for m in every)]
        return min((len(re.findall(r"\w+", text[a:b])) for a, b in between), default=99)

    mine, theirs = places(units), places(others - units)
    found = [n for n in found if not gap(n, theirs, own=False) < min(gap(n, mine), 2)]
    # (nearer first: "the Cessna 182, fifty litres" gives the litres fifty, right before their word)
    return sorted(found, key=lambda n: (measured(n), gap(n, mine) > 1, gap(n, mine), found.index(n)))


def _types(schema: dict) -> list:
    types = schema.get("type")
    return types if isinstance(types, list) else [types]


def _as_type(schema: dict, value: float) -> object:
    types = _types(schema)
    if "integer" in types and float(value).is_integer():
        return int(value)
    if "number" in types:
        return int(value) if float(value).is_integer() else value
    return None


_NEGATED = re.compile(r"\b(?:not|no|nothing|never|none|isn ?t|aren ?t|don ?t|without)(?:\s+\S+)?\s*$")


def _enum(schema: dict, text: str, taken: set) -> object:
    values = schema.get("enum")
    if values is None and "const" in schema:
        values = [schema["const"]]
    if values is None:
        return None
    said = f" {norm(text)} "
    hits: list[tuple[int, int, object]] = []  # (position, -length, value)
    for v in values:
        if isinstance(v, str) and norm(v) and f" {norm(v)} " in said:
            hits.append((said.index(f" {norm(v)} "), -len(v), v))
        elif isinstance(v, str) and (at := _short_form(v, text)) is not None:  # "mod-7" for "model-7"
            hits.append((at, 0, v))
        elif isinstance(v, (int, float)) and not isinstance(v, bool) and v in numbers(text):
            hits.append((0, 0, v))
    if not hits:  # a word that only one value has ("the Reach" for "Cobble Reach"), singular or plural
        owners: dict[str, set] = {}
        for v in values:
            if isinstance(v, str):
                for w in norm(v).split():
                    if w not in _STOP and len(w) > 2:
                        owners.setdefault(w, set()).add(v)
                        if v == v.lower():  # a compound's last word: "watch" for "wristwatch" (not in a name)
                            for tail in _tails(w):
                                owners.setdefault(tail, set()).add(v)
        found = list(re.finditer(r"\S+", said))
        words, starts = [m.group(0) for m in found], [m.start() for m in found]  # each word and its place in `said`
        stems = [_stem(x) for x in words]
        # another place's name that shares a word with a value names that place, not the value ("what happened in
        # Gallery Nine?" for "Gallery Two")
        others = _other_names(text)
        for w, vs in owners.items():
            v = next(iter(vs))
            if len(vs) == 1 and v != v.lower() and any(w in n and not n <= set(norm(v).split()) for n in others):
                continue
            if len(vs) == 1:  # the word as written, or its stem ("urgently" for "urgent")
                pos = [i for i, x in enumerate(words) if x in (w, w + "s", w + "es")
                       or (w.endswith("s") and x == w[:-1]) or (len(w) > 3 and stems[i] == _stem(w))
                       or _skeleton_of(x, w) or _one_slip(x, w)]
                if pos:
                    hits.append((starts[pos[0]], 0, next(iter(vs))))
        if not hits:  # a compound said whose last noun is a plain value: "longsword" for "sword"
            plain = {norm(v): v for v in values if isinstance(v, str) and v == v.lower() and len(norm(v).split()) == 1}
            hits += [(starts[i], 0, plain[t]) for i, x in enumerate(words) for t in _tails(x) if t in plain]
    hits = [h for h in hits if h[2] not in taken and not _possessive(text, h[2])]
    hits = [h for h in hits if not _NEGATED.search(said[:h[0]])]  # "nothing urgent, just routine": not urgent
    if not hits:
        return None
    if len({h[2] for h in hits}) > 1:  # "from A to B": the value after "to", "into" or "for" is the one asked for
        led = [h for h in hits if isinstance(h[2], str) and
               re.search(rf"\b(to|into|for)\s+(the\s+)?{re.escape(norm(h[2]).split()[0])}", said)]
        hits = led or hits
    return min(hits)[2]


def _other_names(text: str) -> list[set[str]]:
    """The words of each run of two or more capitalised words in `text` ("Gallery Nine"), not shouted, without an
    English word that opens its sentence ("Open Gallery Two": gallery two)."""
    out = []
    for m in re.finditer(r"\b[A-Z][\w’'-]*(?:\s+[A-Z][\w’'-]*)+", _TITLE.sub("", text)):
        if m.group(0).isupper():
            continue  # "HOLD THE FLYER": said loud, not a name
        words = m.group(0).split()
        if re.search(r"(?:^|[.!?:*]\s*)$", text[:m.start()]) and _english(words[0]):
            words = words[1:]
        said = set(norm(" ".join(words)).split()) - _STOP
        if len(said) > 1:
            out.append(said)
    return out


def _skeleton_of(said: str, word: str) -> bool:
    """`said` is `word` written without its vowels ("advncd" for "advanced"), and no English word itself."""
    from lemminflect import getAllLemmas

    def bones(w: str) -> str:
        return w[0] + re.sub(r"[aeiouy]", "", w[1:])

    return len(word) >= 5 and 3 <= len(said) < len(word) and said[0] == word[0] and bones(said) == bones(word) \
        and not getAllLemmas(said)


def _one_slip(said: str, word: str) -> bool:
    """`said` is `word` (six letters or more) with one slip of the keys: a letter dropped, added or changed, or two
    swapped ("lanturn", "lantren" for "lantern"); the first letter kept, and no English word itself (so a
    real word is never read as a value it happens to be one letter from)."""
    if len(word) < 6 or said == word or said[:1] != word[:1] or abs(len(said) - len(word)) > 1 or _english(said):
        return False
    if len(said) == len(word):
        diff = [i for i in range(len(word)) if said[i] != word[i]]
        return len(diff) == 1 or (len(diff) == 2 and diff[1] == diff[0] + 1 and said[diff[0]] == word[diff[1]]
                                  and said[diff[1]] == word[diff[0]])
    short, long = sorted((said, word), key=len)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def _short_form(value: str, text: str) -> int | None:
    """Where `text` says a value made of a word and a number ("model-7", "Series 2") by the word's first
    letters and the number ("mod-7", "ser2"), or None."""
    m = re.fullmatch(r"([^\W\d_]{3,})[\s-]?(\d+)", value.strip().casefold())
    if m is None:
        return None
    word, num = m.groups()
    for said in re.finditer(rf"(?<![\w-])([^\W\d_]{{2,}})-?{num}(?![\w])", text.casefold()):
        if word.startswith(said.group(1)) and said.group(1) != word:
            return said.start()
    return None


@lru_cache(maxsize=4096)
def _tails(word: str) -> tuple[str, ...]:
    """The last noun of a compound of two nouns, four letters or more ("watch" in "wristwatch"; not "ring"
    in "touring")."""
    from lemminflect import getAllLemmas

    return tuple(word[k:] for k in range(3, len(word) - 3)
                 if "NOUN" in getAllLemmas(word[k:]) and "NOUN" in getAllLemmas(word[:k])) if len(word) >= 7 else ()


def _possessive(text: str, value: object) -> bool:
    """The value is said only as an owner ("the blue cabin's owner"): it names someone else's thing, not itself."""
    if not isinstance(value, str) or not value.strip():
        return False
    said = [m for m in re.finditer(rf"(?<!\w){re.escape(value)}", text, re.I)]
    return bool(said) and all(re.match(r"['’]s\b", text[m.end():]) and not _CONTRACTED.match(text[m.end():])
                              and not _says_a_state(text[m.end():]) for m in said)


def _says_a_state(after: str) -> bool:
    """"'s" before a verb's irregular participle ("my spearhead's bent", "the sail's torn"): "is", not an owner's
    "'s" ("the boat's owner"). (Not before an adjective: "That back room's draughty as a cellar" names no room to
    rent; a complaint.)"""
    from lemminflect import getAllLemmas

    m = re.match(r"['’]s\s+([a-z]{3,})\b", after, re.I)
    if m is None:
        return False
    word = m.group(1).casefold()
    lemmas = getAllLemmas(word)
    return not word.endswith("ing") and any(v != word for v in lemmas.get("VERB", ()))  # ("the Heron's crossing")


# "'s" for "is" or "has", not an owner: "the van's broken down", "my truck's sitting dead", "the bike's done"
_CONTRACTED = re.compile(r"['’]s\s+(?:(?:a|an|the|been|got|gone|not|just|still|all|out|in|on|at|up|down|off|done|"
                         r"dead|stuck|broken|busted|stuffed|finished|here|there|no|now|had|never|only|really)\b|"
                         r"[^\W\d_]{3,}(?:ed|ing|en|wn)\b)", re.I)


def _stem(word: str) -> str:
    """One word's Snowball stem, with the action detector's stemmer (the word itself without PyStemmer)."""
    from app.action_detect import stemmer

    st = stemmer()
    return st.stemWord(word) if st is not None else word


def _bare(name: str) -> str:
    """A name without a leading English article ("the Lucky Star" → "Lucky Star")."""
    got = re.sub(r"^(?:the|a|an)\s+(?=\S)", "", name.strip(), flags=re.I)
    return got if norm(got) else name


_WITH_YOU = re.compile(r"\byou\s+(?:and|&|n)\s+([A-Z][\w’'-]+(?:\s+[A-Z][\w’'-]+)?)")


def _thing_rank(text: str, name: str) -> tuple[bool, bool, bool]:
    """How unlike a thing's name `name` is said, for sorting: opening the line before a comma ("Master Brun, ..."
    calls the listener), never after "the", only as the owner of a noun after it ("the Feast's day")."""
    said = list(re.finditer(rf"(?<!\w){re.escape(name)}(?!\w)", text))
    return (any(m.start() == 0 and text[m.end():m.end() + 1] == "," for m in said),
            not any(re.search(r"\bthe\s+$", text[:m.start()], re.I) for m in said),
            bool(said) and all(re.match(r"['’]s\s+[a-z]", text[m.end():]) for m in said))


_COUPLE = re.compile(r"(\s+(?:and|&)\s+[A-ZÁÉÍÓÚÑ][\w’'-]+(?:\s+[A-ZÁÉÍÓÚÑ][\w’'-]+)+)")


def _strings(text: str, exclude: set[str], long: bool = False, to_whom: bool = False, label: str = "",
             person: bool = False, lower: bool = False, opening: bool = False, unknown: bool = False,
             thing: bool = False) -> list[str]:
    """Free-string candidates, best first, without a leading article. A name: a short quote, a proper name (not at
    a sentence start unless it has more words; not a greeting; an acronym last), the words after "named", "called",
    "titled", a longer quote. `long` (a message, a note): quoted text, what follows a colon, "that", "saying" or
    "tell him". `to_whom` (a recipient): a proper name after "to" or "for" ("for my sister Ada Ruiz") first.
    `label`: the parameter's own name; a proper name right after it goes first ("patient is Ada Ruiz", "patient's
    my daughter Ana"). `person` (a person's name): a proper name after "from", "near", "past" ... is a place, not
    it ("fit in Ana Ruiz" is her). `lower` (a pet's or a patient's name): a lower-case name after a kind, last
    ("my gecko mango needs ...": `_lower_names`). `opening` (an animal's name): a word no English lexicon knows
    may be it though it opens a sentence ("Barnabas here is my mule"), last. `unknown` (any name of a person or an
    animal): a lower-case word no lexicon knows where the line gives a name ("name's tomek"), last of all. `thing`
    (the name of a boat, a book, a train): a name after "the" may be it ("take the Agios Giorgios"), a person's is
    not ("on the Valby")."""
    bad = {norm(x) for x in exclude}
    quoted = [a or b for a, b in (m.groups() for m in QUOTED.finditer(text))]
    names: list[str] = []
    addressed: list[str] = []  # names after "to" or "for", for a recipient
    late: list[str] = []  # a pet's name that opens a sentence
    plain = _TITLE.sub("", text)
    told_of = _past_relatives(plain) if to_whom else []
    for m in _NAME.finditer(plain):
        name = re.sub(r"['’]s$", "", m.group(1).strip())  # "Lola's breath": Lola
        start = m.start(1)
        words = name.split()
        initial = start == 0 or re.search(r"[.!?:]\s*$", plain[:start]) is not None or (
            re.search(r"\*\s*$", plain[:start]) is not None and _english(words[0]))  # "*waves* This is Nugget"
        if initial and len(words) > 1:  # "Please Tomas Reyes" → "Tomas Reyes"; "doc: Rosa Quintero" stays whole
            name, initial = (" ".join(words[1:]) if _english(words[0]) else name), False
        if _PRONOUN.match(words[0]) or norm(words[0]).replace(" ", "'") in _GREETING:  # ("G’day": "g'day")
            name = " ".join(words[1:])  # "I'd" alone is no name; "I Tomas" → "Tomas"; "Hey Tomas" → "Tomas"
        couple = _COUPLE.match(plain[m.end(1):])
        if couple and len(name.split()) == 1:
            name = f"{name} {couple.group(1).strip()}"  # "It's Pat and Lorraine Hoskins": one name for the two of them
        if opening and initial and name and len(name.split()) == 1 and not _english(name) and "'" not in name and \
                norm(name) not in _STOP and not set(norm(name).split()) <= EVERYDAY:
            late.append(name)  # "Barnabas here is my mule": a pet's name may open the line, after all others
        if not name or norm(name) in _STOP or initial or set(norm(name).split()) <= EVERYDAY:
            continue  # (a day or a month is no name: "on Thursday")
        if name.isupper() and len(name) > 1 and all(_english(w) for w in name.split()):
            continue  # "vet NOW", "HELP": English words in capitals are said loud, not a name (an acronym is none)
        if (person and (_PLACE_BEFORE.search(plain[:start]) or
                        (not thing and re.search(r"\bthe\s+$", plain[:start], re.I)))) or \
                ((person or lower) and not to_whom and _GOING_TO.search(plain[:start])):
            continue  # "we've come up from Santa Rosa", "on the Valby", "we're off to Ostend": a place or a thing
        if len(words) == 1 and (name.lower() in _SPELT_TITLES or name.lower().rstrip(".") in ABBREVIATIONS):
            continue  # "fit my daughter in, Doctor": a title alone calls the listener, it names nobody
        if to_whom and any(a <= start < b for a, b in told_of):
            continue  # "the telegram that came for Mr. Hale": whom a thing already sent was for, not a recipient
        (addressed if to_whom and _TO_WHOM.search(plain[:start]) else names).append(name)
    kinds = {m.group(1) for m in _KIND_THEN_NAME.finditer(plain) if m.group(2) in names}
    names = [n for n in names if n not in kinds]  # "my Collie, Rufus": a kind, then the name
    then_kind = _NAME_THEN_KIND.match(plain) if opening else None  # "Bolt, 40-kilo mastiff, big run": the name,
    if then_kind and norm(then_kind.group(1)) not in bad:  # then its kind
        names = [then_kind.group(1), *(n for n in names if n not in then_kind.group(1, 2))]
    # a proper name after "named", "under" ("put it under Ada Ruiz"): said as the name, it goes first
    led = named_as(text)
    if label:
        led = labelled(text, label) + led
    names = sorted(names, key=lambda n: n.isupper())  # an acronym ("radio the RSPCA"): a name when no other is
    names = [*addressed, *led, *(n for n in names if n not in led)]
    names += [m.group(1).strip(" .,!?;:") for m in _AFTER.finditer(text) if not _capitalised(m.group(1))]
    if lower:
        names += _lower_names(text) + late
    if unknown:
        names += _unknown_names(text, to_whom, exclude)
    said = [m.group(1).strip() for m in (*LABELLED.finditer(text), *SAYING.finditer(text))
            if not _relative(text, m)] if long else []
    if long:  # a message keeps its article; a name alone is no message ("to Ana Ruiz in the harbour town")
        out = [*quoted, *said]
    else:
        short = [q for q in quoted if len(q.split()) <= 4]
        out = [*short, *names, *(q for q in quoted if q not in short)]
    out = [x if long else _bare(x) for x in out]  # a message keeps its article ("the parcel is late")
    bad_words = {w for x in bad for w in x.split()}  # "Captain Moreau" for a speaker named "Captain Ines Moreau"
    # the name a line opens with, before a comma, that shares a word with the speaker's: it calls the listener
    # ("Master Oswin, the wind broke the mast ...", said to Oswin Tarrant)
    called = {norm(m.group(1)) for m in _CALLED.finditer(text) if set(norm(m.group(1)).split()) & bad_words}
    return list(dict.fromkeys(y for y in out
                              if norm(y) and norm(y) not in bad and not set(norm(y).split()) <= bad_words
                              and norm(y) not in called))


# an animal's name opening the line, then its kind between commas ("Rex, my Labrador, ...", "Bolt, 40-kilo
# mastiff, ...")
_NAME_THEN_KIND = re.compile(r"^\W*([A-Z][\w’'-]+),\s+(?:(?:my|our|his|her|their|a|an|the)\s+|\d+[\s-]?[^\W\d_]+\s+)"
                             r"(?:[\w-]+\s+){0,2}?([A-Z][\w’'-]+)\s*(?:[,.;!]|$)")


def initialisms(text: str) -> set[str]:
    """The initials of each run of two or more capitalised words ("the Northern Air Rescue Service": "NARS"): an
    action's description names its service so, and a player who says "call NARS" names no patient."""
    runs = re.finditer(r"[A-Z][\w’'-]*(?:\s+(?:of\s+|and\s+|the\s+)?[A-Z][\w’'-]*)+", text)
    heads = ["".join(w[0] for w in m.group(0).split() if w[0].isupper()) for m in runs]
    return {h[i:] for h in heads for i in range(len(h) - 1)}  # (from any word: "Call the Outback ...")


_ALIAS_STOP = frozenset("of on in at for to with from by and or but is are was were which that who where when "
                        "a an the its it his her their our your my per each".split())
# ... and the prepositions that end a name the lore gives a place or a number ("the silver camp up the branch")
_ALIAS_ENDS = _ALIAS_STOP | frozenset("between among across over under above below beyond near past along through into "
                                      "onto towards toward behind beside after before since until during against like "
                                      "as up down out off around about".split())


def _alias_words(said: str, ends: frozenset[str]) -> list[str]:
    """The words of `said` before the first of `ends` (case-insensitively): an alias's own words."""
    return list(takewhile(lambda w: w.casefold() not in ends, said.split()))


_NOT_A_NAME = frozenset("only same other next last best whole entire very first second third".split())  # ("the only
# room with a view" names no room)


def lore_aliases(params: dict, sentences: list[str]) -> dict[str, dict[str, str]]:
    """{parameter: {alias: value}}: the names the lore gives an enum's values in apposition, said as a name ("Clear
    sake, called Morning Mist: 240 mon") or as "the" and the value's own noun ("The shared room, the great room of
    twenty mats"), for values written as plain lower-case words (kinds, not names). An alias the lore gives two
    values of one parameter, or that is itself a value or a word of one, is none."""
    out: dict[str, dict[str, str]] = {}
    for name, schema in (params.get("properties") or {}).items():
        values = kind_values(schema)
        if len(values) < 2:
            continue
        found: dict[str, set[str]] = {}
        for value in values:
            pattern = re.compile(rf"(?<!\w){re.escape(value)}(?!\w)(?:\s*(?:,|\(|[–—]|\s-)\s*"
                                 r"(?:((?i:called|known as|named|nicknamed|sold as)\s+)|(?i:the)\s+)"
                                 # or "<value> 1, under the red gum, is called the Mayor's site"
                                 r"|(?:\s+(?:no\.?\s*)?\d+)?(?:\s*,[^,.;]{1,60},)?\s+(?:is|was)\s+(?:still\s+|also\s+|"
                                 r"often\s+|locally\s+)?((?i:called|known as|nicknamed))\s+(?:the\s+)?"
                                 # or "Motel room 7 is painted pink ...; it is still called the honeymoon suite"
                                 r"|(?:\s+(?:no\.?\s*)?\d+)?[^.!?]{1,120}?[;,]\s+(?:and\s+)?(?:it|which)\s+"
                                 r"(?:is|was)\s+"
                                 r"(?:still\s+|also\s+|now\s+|often\s+)?((?i:called|known as|nicknamed))\s+(?:the\s+)?)"
                                 r"([^\W\d_][\w'’-]*(?:\s+[^\W\d_][\w'’-]*){0,2})", re.I)
            head = norm(value).split()[-1]
            for sentence in sentences:
                for m in pattern.finditer(sentence):
                    words = _alias_words(m.group(4), _ALIAS_STOP)
                    alias = norm(" ".join(words))
                    # said as its name ("called Morning Mist"), or "the" and the value's own noun ("the great room")
                    named = m.group(1) or m.group(2) or m.group(3) or (
                        len(alias.split()) > 1 and alias.split()[-1] == head and alias.split()[0] not in _NOT_A_NAME)
                    if named and alias and len(alias) > 2 and not any(alias in norm(v).split() or alias == norm(v)
                                                                      for v in values):
                        found.setdefault(alias, set()).add(value)
        kept = {a: next(iter(vs)) for a, vs in found.items() if len(vs) == 1 and not set(a.split()) <= _STOP}
        if kept:
            out[name] = kept
    for name, schema in (params.get("properties") or {}).items():  # names: "Ashgrove, the division town"
        enum = schema.get("enum") if isinstance(schema, dict) else None
        names = [v for v in enum if isinstance(v, str) and norm(v) and v != v.lower()] if isinstance(enum, list) \
            else []
        if len(names) < 2:
            continue
        found = {}
        for value in names:
            pattern = re.compile(rf"(?<![\w'’]){re.escape(value)}(?!\w),\s+the\s+([a-z][\w'’-]*(?:\s+[a-z][\w'’-]*)"
                                 r"{0,2})")
            for sentence in sentences:
                for m in pattern.finditer(sentence):
                    words = _alias_words(m.group(1), _ALIAS_ENDS)
                    alias = norm(" ".join(words))
                    if len(words) > 1 and words[0] not in _NOT_A_NAME and not any(
                            w in norm(v).split() for v in names for w in alias.split()):
                        found.setdefault(alias, set()).add(value)
        kept = {a: next(iter(vs)) for a, vs in found.items() if len(vs) == 1}
        if kept:
            out[name] = {**out.get(name, {}), **kept}
    return out


def lore_numbers(params: dict, sentences: list[str]) -> dict[str, dict[str, int]]:
    """{parameter: {"the <name>": number}}: the names the lore gives a numbered thing, for an integer parameter
    named by that thing's noun ("bay"): "Bay 11 is called "the Furnace" by the dockers" gives "the furnace" for
    bay 11. A name the lore gives two numbers is none; each number still passes its schema where it is used."""
    out: dict[str, dict[str, int]] = {}
    for name, schema in (params.get("properties") or {}).items():
        if not isinstance(schema, dict) or "integer" not in _types(schema):
            continue
        nouns = [w for w in name.lower().split("_") if len(w) > 2 and w not in _STOP and w != "number"]
        if not nouns:
            continue
        pattern = re.compile(rf"\b(?:{'|'.join(map(re.escape, nouns))})\s+(\d{{1,4}})\b[^.;!?]{{0,60}}?\b(?:is|was)\s+"
                             r"(?:still\s+|also\s+|often\s+)?(?:called|known as|nicknamed)\s+[\"“']?(?:the\s+)?"
                             r"([^\W\d_][\w'’-]*(?:\s+[^\W\d_][\w'’-]*){0,2})", re.I)
        found: dict[str, set[int]] = {}
        for sentence in sentences:
            for m in pattern.finditer(sentence):
                words = _alias_words(m.group(2), _ALIAS_ENDS)
                if words:
                    found.setdefault(f"the {norm(' '.join(words))}", set()).add(int(m.group(1)))
        kept = {a: next(iter(ns)) for a, ns in found.items() if len(ns) == 1}
        if kept:
            out[name] = kept
    return out


_THE_NAME = re.compile(r"\b[Tt]he\s+([A-Z][\w'’-]*(?:(?:\s+(?:of(?:\s+the)?|de|del|de\s+la|de\s+los|la|los|las|di|"
                       r"da|du|von|van))?\s+[A-Z][\w'’-]*)*)")
NAMED_IN = 0.25  # a name the lore says in more than this share of its documents ("the Guild") names no one value


def _name_enums(params: dict) -> list[tuple[str, list[str]]]:
    """(parameter, values) for each string enum of at least two names (values not all lower case)."""
    out = []
    for name, schema in (params.get("properties") or {}).items():
        enum = schema.get("enum") if isinstance(schema, dict) else None
        values = [v for v in enum if isinstance(v, str) and norm(v) and v != v.lower()] if isinstance(enum, list) \
            else []
        if len(values) >= 2:
            out.append((name, values))
    return out


def _own_page(value: str, title: str) -> bool:
    """Is the document titled `title` the value's own ("La Casa de las Velas" for "Casa de las Velas")?"""
    words = norm(title).split()
    return norm(value) in (" ".join(words), " ".join(words[1:]))


def lore_names(params: dict, docs: list[tuple[str, str]]) -> dict[str, dict[str, str]]:
    """{parameter: {alias: value}}: the name a value's own document gives it in the lore's language, for enum values
    that are names: the first "the" and a capitalised name in the first two sentences of the document titled with the
    value ("La Casa de las Velas": "... a low door opens on the Candle House"), unless the lore says that name in
    more than NAMED_IN of its documents ("the Guild"), or it is a value or another document's title ("the Puerta
    Vieja"). `docs`: (title, text) per document."""
    out: dict[str, dict[str, str]] = {}
    if not docs:
        return out
    titled = {" ".join(norm(t).split()[k:]) for t, _ in docs for k in (0, 1)}  # another document's own name
    said_in: dict[str, int] = {}
    for _, text in docs:
        for alias in {norm(m.group(1)) for m in _THE_NAME.finditer(text)}:
            said_in[alias] = said_in.get(alias, 0) + 1
    for name, values in _name_enums(params):
        found: dict[str, set[str]] = {}
        for value in values:
            for title, text in docs:
                if not _own_page(value, title):
                    continue
                opening = " ".join(split_sentences(text)[:2])
                for m in _THE_NAME.finditer(opening):
                    alias = norm(m.group(1))
                    if alias and alias not in {norm(v) for v in values} and alias not in titled \
                            and said_in.get(alias, 0) <= max(1.0, NAMED_IN * len(docs)):  # (its own: always)
                        found.setdefault(alias, set()).add(value)
                        break
        kept = {a: next(iter(vs)) for a, vs in found.items() if len(vs) == 1}
        if kept:
            out[name] = kept
    return out


def aliased(params: dict, text: str, args: dict, aliases: dict | None) -> dict:
    """`args` with each required enum parameter it lacks that `text` names by a lore alias of one value (`aliases`,
    from `lore_aliases`: "a dozen jugs of the Morning Mist" is clear sake); each value still passes its schema."""
    props, required = params.get("properties") or {}, set(params.get("required") or [])
    said, out = f" {norm(text)} ", dict(args)
    for name, names in (aliases or {}).items():
        if name in out or name not in required or not isinstance(props.get(name), dict):
            continue
        meant = {v for alias, v in names.items() if f" {alias} " in said}
        if len(meant) == 1 and valid(props[name], value := next(iter(meant))):
            out[name] = value
    return out


DESCRIBED_BY = 2  # a line describes an enum value: it says this many of the words the lore says of that value alone


def lore_descriptions(params: dict, sentences: list[str]) -> dict[str, dict[str, frozenset[str]]]:
    """{parameter: {value: stems}}: what the lore and the parameter's own description say of each value of a
    string enum, in the clauses that open with the value ("Anvil Deep is a platinum mine cut two kilometres into a
    metal moonlet"; "The garden room, the only room on the inner court, with its own veranda"; a table's row,
    "Tour: 4WD tour; Length: Full day ..."; "which room: ..., or the garden room on the inner court"),
    kept only where no other value's clauses say them, and never a word of a value itself. Names and kinds of two
    words are described; a kind of one common word ("work") is not, though what its clauses say is no other's."""
    from collections import Counter

    from app.action_detect import stems

    out: dict[str, dict[str, frozenset[str]]] = {}
    for name, schema in (params.get("properties") or {}).items():
        enum = schema.get("enum") if isinstance(schema, dict) else None
        values = [v for v in enum if isinstance(v, str) and norm(v)] if isinstance(enum, list) else []
        if len(values) < 2:
            continue
        said = {v: re.compile(rf"(?:the |a |an )?{re.escape(norm(v))}(?!\w)") for v in values}
        own = set().union(*(stems(v) | stems(v.replace("-", " ")) for v in values))
        words: dict[str, set[str]] = {v: set() for v in values}
        cast = re.split(r"[,;:]|\s(?:or|and)\s", str(schema.get("description") or ""))  # the cast file's own ("an
        for sentence in [*sentences, *cast]:  # upper room on the second floor, or the garden room on the inner court")
            row = re.match(r"[^\W\d_][\w ]{0,30}:\s*(.*)", sentence)  # a table's row ("Tour: 4WD tour; Length:
            # Full day, lunch at the Long Pool; Price: $210"): all of it is about the value in its first cell
            cell = norm(row.group(1).split(";")[0]) if row else None
            head = [v for v in values if cell is not None and said[v].fullmatch(cell)]
            for clause in [sentence] if len(head) == 1 else re.split(r";|\s[–—]\s", sentence):
                plain = norm(clause)
                said_first = head if len(head) == 1 else [v for v in values if said[v].match(plain)]
                if len(said_first) == 1:  # the clause is about it
                    words[said_first[0]] |= stems(clause.replace("-", " ")) - own
        counts = Counter(w for ws in words.values() for w in ws)
        kept = {v: frozenset(w for w in ws if counts[w] == 1) for v, ws in words.items()
                if " " in norm(v) or v != v.lower()}  # (names, or kinds of two words: a common word such as "work"
        if any(kept.values()):  # opens too many clauses to be described, but what they say is no other's)
            out[name] = {v: ws for v, ws in kept.items() if ws}
    return out


RARE_IN = 2  # a word the lore says in at most this many documents describes the value whose own document says it


def lore_documents(params: dict, docs: list[tuple[str, str]],
                   shut: list[tuple[str, str]] = ()) -> dict[str, dict[str, frozenset[str]]]:
    """{parameter: {value: stems}}: what a value's own document (titled with the value, "The Bell Loft" for "Bell
    Loft") says that the lore says rarely (in at most RARE_IN documents) and that no other value's own document
    says, for string enums of names ("see me down to the fountain with the bronze heron": the court's own page has
    the fountain and its heron; the other rooms' pages have neither). Never a
    word of a value itself; each word one stem (no verb's base form beside it: "forbidden" is one word, not two).
    `docs`: (title, text) of the lore the character sees whatever the state; `shut`: of its gated documents, which
    name no value but count in the rarity and keep their value's words from the others (the seed store's page, while
    gated, still keeps "seed" from the orchard's). Merged with `lore_descriptions`, it describes a value to
    `by_description`."""
    from collections import Counter

    from app.action_detect import stems

    out: dict[str, dict[str, frozenset[str]]] = {}
    if not docs:
        return out
    said = [stems(text.replace("-", " "), lemmas=False) for _, text in [*docs, *shut]]
    rare = {w for w, n in Counter(w for ws in said for w in ws).items() if n <= RARE_IN}
    for name, values in _name_enums(params):
        own = set().union(*(stems(v) | stems(v.replace("-", " ")) for v in values))
        pages: dict[str, set[str]] = {}
        claimed: dict[str, set[str]] = {}  # (gated pages too)
        for k, ((title, _), words) in enumerate(zip([*docs, *shut], said)):
            for value in values:
                if _own_page(value, title):
                    claimed.setdefault(value, set()).update(words)
                    if k < len(docs):
                        pages.setdefault(value, set()).update(words)
        kept = {v: frozenset(w for w in ws if w in rare and w not in own
                             and not any(w in other for u, other in claimed.items() if u != v))
                for v, ws in pages.items()}
        if any(kept.values()):
            out[name] = {v: ws for v, ws in kept.items() if ws}
    return out


def with_titles(params: dict, kinds: dict[str, str]) -> dict:
    """`params` with each free-string parameter that names a kind of the lore's documents ("the book's title", and
    documents of kind `book`) read as an enum of those documents' titles, when there are two or more, so that
    `lore_names`, `lore_documents` and `by_title_word` find a title as they find an enum's names ("the ferrymen's
    psalter" is the Salterio dei Barcaioli, whose page opens "..., the Ferrymen's Psalter"). The schema a value
    must pass stays the parameter's own. `kinds`: {document title: kind}."""
    props = dict(params.get("properties") or {})
    for name, schema in list(props.items()):
        if not (isinstance(schema, dict) and schema.get("type") == "string" and "enum" not in schema):
            continue
        about = _about(name, schema)
        titles = sorted({t for t, k in kinds.items() if k and norm(t) and
                         re.search(rf"\b{re.escape(norm(k))}(?:s|es)?\b", about)})
        if len(titles) >= 2:
            props[name] = {**schema, "enum": titles}
    return {**params, "properties": props}


def by_title_word(params: dict, text: str, args: dict, titles: dict[str, list[str]]) -> dict:
    """`args` with each required free string it lacks that the line names by a word of one title alone (`titles`:
    {parameter: titles}, from `with_titles`): a word of no other title, of four letters or more, that is no English
    word ("may I borrow the salterio?" for "Il Salterio dei Barcaioli"; "the letters" names none: English)."""
    props, required = params.get("properties") or {}, set(params.get("required") or [])
    said = set(norm(text).split())
    out = dict(args)
    for name, names in titles.items():
        if name in out or name not in required or not isinstance(props.get(name), dict):
            continue
        words = {t: set(norm(t).split()) for t in names}
        hits = {t for t, ws in words.items()
                for w in ws - set().union(*(o for u, o in words.items() if u != t))
                if len(w) > 3 and w in said and not _english(w)}
        if len(hits) == 1 and valid(props[name], title := next(iter(hits))):
            out[name] = title
    return out


def by_description(params: dict, text: str, args: dict, descriptions: dict | None,
                   never: set[str] = frozenset(), declared: set[str] = frozenset(), lemmas: bool = True) -> dict:
    """`args` with each required enum parameter it lacks that `text` describes as the lore describes one value
    alone (`descriptions`, from `lore_descriptions`): at least DESCRIBED_BY of that value's own words, and none of
    any other value's ("the platinum mine cut into the moon" is Anvil Deep; "the room on the inner court with the
    veranda" is the garden room). The words of the action itself (`declared`, `described_words`) describe none:
    "take four of us out on the Mule next loop" names the hauler's ship and route, not the stop at the loop's end.
    Each value still passes its schema. `lemmas` False: each word of the line counts once (`stems`)."""
    from app.action_detect import stems

    props, required = params.get("properties") or {}, set(params.get("required") or [])
    said = stems(text.replace("-", " "), lemmas) - stems(" ".join([*never, *(str(v) for v in args.values())])) \
        - declared
    out = dict(args)
    for name, values in (descriptions or {}).items():
        if name in out or name not in required or not isinstance(props.get(name), dict):
            continue
        shared = sorted(((len(ws & said), v) for v, ws in values.items()), key=lambda x: -x[0])
        if shared and shared[0][0] >= DESCRIBED_BY and (len(shared) < 2 or shared[1][0] == 0) \
                and valid(props[name], shared[0][1]):
            out[name] = shared[0][1]
    return out


# the lore's apposition of a name and what it is ("Barnaby, a 9-year-old basset who has lived at the shelter since
# March 2024; Wicket, a deaf white cat of 6"): the name, and the description to the clause's end
_NAME_IS_A = re.compile(r"(?:^|(?<=[\s(]))([A-Z][\w'’-]+(?:\s+(?:(?:de|la|le|du|of|the|van|von)\s+)?[A-Z][\w'’-]+)*),"
                        r"\s+an?\s+([^;:]+?)(?=;|,\s+(?:and\s+)?[A-Z]|\.$|$)")


def _names_a_name(schema: object) -> bool:
    """A free string whose description asks for a name ("the name of the shelter animal to adopt")."""
    return isinstance(schema, dict) and schema.get("type") == "string" and "enum" not in schema and \
        re.search(r"\bname\b", str(schema.get("description") or ""), re.I) is not None


def lore_appositions(params: dict, sentences: list[str]) -> dict[str, dict[str, frozenset[str]]]:
    """{parameter: {name: stems}}: for each free-string parameter that asks for a name, what the lore says each name
    is in apposition ("Wicket, a deaf white cat of 6"), kept where no other name's apposition says it,
    never a word of the name itself; each word one stem. `by_apposition` reads a line's description of one of them
    as its name ("the deaf white cat ... start the papers")."""
    from collections import Counter

    from app.action_detect import stems

    wanted = [k for k, schema in (params.get("properties") or {}).items() if _names_a_name(schema)]
    if not wanted:
        return {}
    said: dict[str, set[str]] = {}
    for sentence in sentences:
        for m in _NAME_IS_A.finditer(sentence):
            said.setdefault(m.group(1), set()).update(stems(m.group(2).replace("-", " "), lemmas=False))
    counts = Counter(w for ws in said.values() for w in ws)
    kept = {name: frozenset(w for w in ws if counts[w] == 1) - stems(name) for name, ws in said.items()}
    kept = {name: ws for name, ws in kept.items() if ws}
    return {k: kept for k in wanted} if kept else {}


def by_apposition(params: dict, text: str, args: dict, appositions: dict | None,
                  never: set[str] = frozenset(), declared: set[str] = frozenset()) -> dict:
    """`args` with each required free-string name the line lacks that it describes as the lore's apposition
    describes one name alone (`appositions`, from `lore_appositions`): at least DESCRIBED_BY of that name's own
    words and none of another's ("the old basset who's been here since last March" is Barnaby). The words of the
    action itself (`declared`) and of the values taken describe nobody; the name still passes its schema."""
    return by_description(params, text, args, appositions, never, declared, lemmas=False)


def by_unit(params: dict, text: str, args: dict) -> dict:
    """`args` with each required enum parameter it lacks taken from the measure the line counts in, where another
    parameter's description pairs that measure with one value alone ("how many: sacks of salt, ... ells of wool
    cloth": "twelve ells of the grey wadmal" is wool cloth). Each value still passes its schema."""
    props, required = params.get("properties") or {}, set(params.get("required") or [])
    said = norm(text)
    out = dict(args)
    for name, schema in props.items():
        enum = schema.get("enum") if isinstance(schema, dict) else None
        values = [v for v in enum if isinstance(v, str) and norm(v)] if isinstance(enum, list) else []
        if name in out or name not in required or len(values) < 2:
            continue
        paired: dict[str, set[str]] = {}
        for other, o in props.items():
            about = norm(str(o.get("description") or "")) if other != name and isinstance(o, dict) else ""
            for v in values:
                for m in re.finditer(rf"\b([a-z]+) of {re.escape(norm(v))}(?!\w)", about):
                    if m.group(1) not in _STOP and m.group(1) not in _WORDS:
                        paired.setdefault(m.group(1), set()).add(v)
        hits = {next(iter(vs)) for unit, vs in paired.items() if len(vs) == 1
                and re.search(rf"\b(?:{re.escape(unit)}|{re.escape(unit.rstrip('s'))}) of\b", said)}
        if len(hits) == 1 and valid(schema, next(iter(hits))):
            out[name] = next(iter(hits))
    return out


def _unit(word: str) -> str:
    """A unit's one name, however it is said ("kg", "kilos", "kilograms" are "kilogram")."""
    w = word.casefold().strip(".")
    for unit, short in _SAID_UNITS.items():
        if w in short or w.rstrip("s").replace("er", "re") == unit:
            return unit
    return w.rstrip("s") if len(w) > 3 else w


_N = r"(\d+(?:[.,]\d+)?)\s*-?\s*([^\W\d_]+)"  # a number and its unit ("10 kg", "25kg")
# a range's bounds, from its numbers: (low, high, low included, high included); None is open
_RANGES = ((re.compile(rf"\b(?:under|below|less than)\s+{_N}", re.I), lambda a, b: (None, a, False, False)),
           (re.compile(rf"\b(?:up to|at most)\s+{_N}", re.I), lambda a, b: (None, a, False, True)),
           (re.compile(rf"(\d+(?:[.,]\d+)?)\s*(?:to|-|–)\s*{_N}", re.I), lambda a, b: (a, b, True, True)),
           (re.compile(rf"\b(?:over|above|more than)\s+{_N}", re.I), lambda a, b: (a, None, False, False)),
           (re.compile(rf"\b(?:at least)\s+{_N}", re.I), lambda a, b: (a, None, True, False)),
           (re.compile(rf"{_N}\s+(?:and|or)\s+(?:over|above|more|up)\b", re.I), lambda a, b: (a, None, True, False)))
Range = tuple[str, float | None, float | None, bool, bool]  # unit, low, high, low included, high included


def _said_of_each(schema: dict) -> list[tuple[str, str]]:
    """(value, what the parameter's description says after it and before the next value) for each enum value the
    description names, in its order ("youth (15 to 19), child (6 to 14)": ("youth", " (15 to 19), "), ...)."""
    enum = schema.get("enum")
    about = str(schema.get("description") or "")
    values = [v for v in enum if isinstance(v, str) and norm(v)] if isinstance(enum, list) else []
    at = sorted((m.start(), m.end(), v) for v in values
                if (m := re.search(rf"(?<!\w){re.escape(v)}(?!\w)", about, re.I)))
    return [(value, about[end:at[k + 1][0] if k + 1 < len(at) else len(about)]) for k, (_, end, value) in enumerate(at)]


def value_ranges(schema: dict) -> dict[str, Range]:
    """`_value_ranges` of the schema, read once per schema (it is read on every clause of a turn)."""
    return _value_ranges(json.dumps(schema, sort_keys=True)) if isinstance(schema, dict) else {}


@lru_cache(maxsize=1024)
def _value_ranges(key: str) -> dict[str, Range]:
    """{value: range}: the range of a measure the parameter's description gives each enum value, said after the
    value and before the next ("a small run (dogs under 10 kg), a medium run (10 to 25 kg), a large run (over 25
    kg)"). A range with no unit of measure (an age, "youth (15 to 19)") is none: a number alone could count
    anything."""
    out: dict[str, Range] = {}
    for value, said in _said_of_each(json.loads(key)):
        for pattern, bounds in _RANGES:
            m = pattern.search(said)
            if m:
                nums = [float(g.replace(",", ".")) for g in m.groups() if re.fullmatch(r"[\d.,]+", g)]
                unit = _unit(m.groups()[-1])
                if unit in _MEASURES:
                    out[value] = (unit, *bounds(nums[0], nums[-1]))
                break
    return out


def _within(number: float, r: Range) -> bool:
    _, low, high, low_in, high_in = r
    return (low is None or number > low or (low_in and number == low)) and \
        (high is None or number < high or (high_in and number == high))


def by_range(params: dict, text: str, args: dict) -> dict:
    """`args` with each required enum parameter it lacks taken from a measure the line says ("Bolt is about 27
    kg", "a 40-kilo mastiff") that falls in the range the description gives one value alone (`value_ranges`: "a
    large run (over 25 kg)"). Each value still passes its schema."""
    props, required = params.get("properties") or {}, set(params.get("required") or [])
    out = dict(args)
    for name, schema in props.items():
        if name in out or name not in required or not isinstance(schema, dict):
            continue
        ranges = value_ranges(schema)
        if len(ranges) < 2:
            continue
        hits: set[str] = set()
        for _, end, number in spans(text):
            m = re.match(r"\s*-?\s*([^\W\d_]+)", text[end:])
            if m:
                hits |= {v for v, r in ranges.items() if r[0] == _unit(m.group(1)) and _within(number, r)}
        if len(hits) == 1 and valid(schema, value := next(iter(hits))):
            out[name] = value
    return out


# a range of ages a description gives a value, its numbers with no unit ("youth (15 to 19)", "senior (65 and over)")
_AGE_RANGES = ((re.compile(r"(\d+)\s*(?:to|-|–)\s*(\d+)(?!\s*-?\s*[^\W\d_]*\w)(?!\d)", re.I),
                lambda a, b: (a, b, True, True)),
               (re.compile(r"(\d+)\s*(?:\+|and\s+(?:over|above|up|older)\b|or\s+(?:over|older|more)\b)", re.I),
                lambda a, b: (a, None, True, False)),
               (re.compile(r"\b(?:under|below|younger\s+than)\s+(\d+)(?!\s*-?\s*[^\W\d_]*\w)", re.I),
                lambda a, b: (None, a, False, False)),
               (re.compile(r"\b(?:over|above|older\s+than)\s+(\d+)(?!\s*-?\s*[^\W\d_]*\w)", re.I),
                lambda a, b: (a, None, False, False)))
_AGE_AFTER = re.compile(r"^(?:\s*|-)(?:years?|yrs?)(?:\s*|-)old\b|^\s*(?:years?|yrs?)\s+of\s+age\b", re.I)


def age_ranges(schema: dict) -> dict[str, Range]:
    """`_age_ranges` of the schema, read once per schema."""
    return _age_ranges(json.dumps(schema, sort_keys=True)) if isinstance(schema, dict) else {}


@lru_cache(maxsize=1024)
def _age_ranges(key: str) -> dict[str, Range]:
    """{value: ("age", low, high, ...)}: the range of ages the parameter's description gives each enum value, a
    range whose numbers have no unit, said after the value and before the next ("youth (15 to 19), child (6 to
    14) or senior (65 and over)"). Only an age said as one (`ages`) falls in it."""
    out: dict[str, Range] = {}
    for value, said in _said_of_each(json.loads(key)):
        for pattern, bounds in _AGE_RANGES:
            m = pattern.search(said)
            if m:
                nums = [float(g) for g in m.groups() if g]
                out[value] = ("age", *bounds(nums[0], nums[-1]))
                break
    return out


def ages(text: str) -> list[tuple[int, int, float]]:
    """The numbers `text` says as somebody's age: "he's 16", "I turned 68", "my daughter is nine", "a
    10-year-old", "aged 70"."""
    return [n for n in spans(text) if _AGE_BEFORE.search(text[:n[0]]) or _AGE_AFTER.match(text[n[1]:])]


def by_age(params: dict, text: str, args: dict) -> dict:
    """`args` with a required enum parameter taken from the age the line says, where it falls in the range of ages
    the description gives one value alone (`age_ranges`: "my son, he's 16" is a youth pass, "I turned 68" a
    senior's). An age outranks a value the line did not say by its own word ("my son" had made it a child's pass).
    A number that was only the age counts nothing else ("my daughter is nine, she needs a pass" is no nine-day
    pass). Each value still passes its schema."""
    props, required = params.get("properties") or {}, set(params.get("required") or [])
    said_ages = ages(text)
    if not said_ages:
        return args
    out = dict(args)
    for name, schema in props.items():
        if name not in required or not isinstance(schema, dict):
            continue
        ranges = age_ranges(schema)
        if len(ranges) < 2 or (name in out and re.search(rf"(?<!\w){re.escape(norm(str(out[name])))}(?!\w)",
                                                          norm(text))):
            continue
        hits = {v for v, r in ranges.items() for _, _, n in said_ages if _within(n, r)}
        if len(hits) == 1 and valid(schema, value := next(iter(hits))):
            out[name] = value
            numbers_said = [n for _, _, n in spans(text)]
            for other, v in list(out.items()):  # the age was no count of days
                if other != name and isinstance(v, (int, float)) and not isinstance(v, bool) and \
                        any(v == n for _, _, n in said_ages) and numbers_said.count(v) == 1:
                    del out[other]
    return out


_PLACE_PREP = r"(?:at|on|in|over|down|up|across|by|beyond|below|above|under|near|past|along)"


def epithets(schema: dict) -> dict[str, frozenset[str]]:
    """`_epithets` of the schema, read once per schema (it is read on every clause of a turn)."""
    return _epithets(json.dumps(schema, sort_keys=True)) if isinstance(schema, dict) else {}


@lru_cache(maxsize=1024)
def _epithets(key: str) -> dict[str, frozenset[str]]:
    """{value: words}: the words of the epithet the parameter's description gives each enum value, "the <words> of
    <value>" or "<value> <preposition> the <words>" ("the mainland port of Velmar", "the summit of the Orrin
    Pass", "the Hollin Saddle at the top of the pass"), kept where no other value's epithet has them and no value
    has them as its own words."""
    schema = json.loads(key)
    enum = schema.get("enum")
    about = str(schema.get("description") or "")
    values = [v for v in enum if isinstance(v, str) and norm(v)] if isinstance(enum, list) else []
    words: dict[str, set[str]] = {}
    for v in values:
        value = re.escape(v)
        for m in re.finditer(rf"\bthe\s+([^\W\d_][\w'’ -]*?)\s+of\s+(?:the\s+)?{value}(?!\w)"
                             rf"|(?<!\w){value}\s+{_PLACE_PREP}\s+the\s+([^\W\d_][\w'’ -]*?)\s*(?=[,;:)]|\bor\b|"
                             rf"\band\b|$)", about, re.I):
            said = re.split(r"[,;:(]|\s(?:or|and)\s", m.group(1) or m.group(2))[-1 if m.group(1) else 0]
            kept = {w for w in norm(said.replace("-", " ")).split()
                    if len(w) > 2 and w not in _ALIAS_STOP | _NOT_A_NAME}
            also = [o for o in values if m.group(1) and re.match(rf"\s+(?:or|and)\s+(?:the\s+)?"
                                                               rf"{re.escape(o)}(?!\w)", about[m.end():], re.I)]
            for one in (v, *also):  # ("the islands of Tessa or Mirel": both)
                words.setdefault(one, set()).update(kept)
    own = {w for v in values for w in norm(v.replace("-", " ")).split()}
    counts: dict[str, int] = {}
    for ws in words.values():
        for w in ws:
            counts[w] = counts.get(w, 0) + 1
    return {v: frozenset(w for w in ws if counts[w] == 1 and w not in own) for v, ws in words.items()
            if any(counts[w] == 1 and w not in own for w in ws)}


def by_epithet(params: dict, text: str, args: dict) -> dict:
    """`args` with each required enum parameter it lacks that the line names by "the" and a word of one value's
    epithet (`epithets`): "cross to the mainland" for "the mainland port of Velmar", "a litter up to the summit"
    for "the summit of the Orrin Pass". A value taken by its own word that only places another ("the lake below the
    saddle", for "the lake of Brae Tarn" and "the Hollin Saddle") gives way to the one the epithet names. Each
    value still passes its schema."""
    props, required = params.get("properties") or {}, set(params.get("required") or [])
    said = f" {norm(text)} "
    out = dict(args)
    for name, schema in props.items():
        if not isinstance(schema, dict):
            continue
        if name in out and isinstance(out[name], str):  # "the lake below the saddle": the lake, not the saddle
            words = "|".join(re.escape(w) for w in norm(out[name]).split() if w not in _STOP)
            told = {v for v, ws in epithets(schema).items() if v != out[name] and words and any(
                re.search(rf" the {re.escape(w)} (?:just |right )?{_PLACE_PREP} (?:the )?(?:{words}) ", said)
                for w in ws)}
            if len(told) == 1 and valid(schema, value := next(iter(told))):
                out[name] = value
            continue
        if name in out or name not in required:
            continue
        hits = {v for v, ws in epithets(schema).items() if any(f" the {w} " in said for w in ws)}
        if len(hits) == 1 and valid(schema, value := next(iter(hits))):
            out[name] = value
    return out


def explained(schema: dict) -> dict[str, frozenset[str]]:
    """`_explained` of the schema, read once per schema."""
    return _explained(json.dumps(schema, sort_keys=True)) if isinstance(schema, dict) else {}


@lru_cache(maxsize=1024)
def _explained(key: str) -> dict[str, frozenset[str]]:
    """{value: stems}: the words the parameter's description explains each kind with, in the clause (between
    commas, colons or semicolons, or "or" and "and" where two are named) that names it and no other value ("what
    work: forge a new one, mend a broken or bent one, or sharpen it": forge "new", mend "broken", "bent"; "the mule
    ride, the full-day jeep tour or the night walk": the jeep tour "day"), kept where no other value's clause or
    name has them; no number."""
    from collections import Counter

    from app.action_detect import stems

    schema = json.loads(key)
    kinds = kind_values(schema)

    def named_in(clause: str) -> list[str]:
        return [v for v in kinds if re.search(rf"(?<!\w){re.escape(v)}(?!\w)", clause, re.I)]

    words: dict[str, set[str]] = {}
    clauses = [part for clause in re.split(r"[,;:]", str(schema.get("description") or ""))
               for part in ([clause] if len(named_in(clause)) < 2 else re.split(r"\s(?:or|and)\s", clause))]
    for clause in clauses:  # ("dinner or the late supper after the mine shift": two, split at "or")
        named = named_in(clause)
        if len(named) == 1:
            said = re.sub(rf"(?<!\w){re.escape(named[0])}(?!\w)", " ", clause, flags=re.I)
            counted = {norm(said[a:b]) for a, b, _ in spans(said)}
            words.setdefault(named[0], set()).update(
                w for w in stems(said.replace("-", " ")) if not any(c.isdigit() for c in w) and w not in counted)
    own = set().union(*(stems(v) for v in kinds)) if kinds else set()
    counts = Counter(w for ws in words.values() for w in ws)
    kept = {v: frozenset(w for w in ws if counts[w] == 1 and w not in own) for v, ws in words.items()}
    return {v: ws for v, ws in kept.items() if ws}


def by_explained(params: dict, text: str, args: dict) -> dict:
    """`args` with each required kind the line lacks that it says by a word the description explains one value
    alone with (`explained`: "i want a new axe made" is forge, "my sword got bent" mend). Each value still passes
    its schema."""
    from app.action_detect import stems

    props, required = params.get("properties") or {}, set(params.get("required") or [])
    said = stems(text.replace("-", " "))
    out = dict(args)
    for name, schema in props.items():
        if name in out or name not in required or not isinstance(schema, dict):
            continue
        hits = {v for v, ws in explained(schema).items() if ws & said}
        if len(hits) == 1 and valid(schema, value := next(iter(hits))):
            out[name] = value
    return out


def by_wording(params: dict, text: str, args: dict) -> dict:
    """`args` with what the line's wording gives of the description's: a measure paired with one value (`by_unit`),
    a measure in one value's range (`by_range`), an age in one value's range (`by_age`), one value's epithet
    (`by_epithet`), a word it explains one kind alone with (`by_explained`)."""
    return by_explained(params, text, by_epithet(params, text, by_age(params, text, by_range(
        params, text, by_unit(params, text, args)))))


def kind_values(schema: object) -> list[str]:
    """An enum's values written as plain lower-case words (kinds, not names: "dog", "clear sake")."""
    enum = schema.get("enum") if isinstance(schema, dict) else None
    return [v for v in enum if isinstance(v, str) and v == v.lower() and v.strip()] if isinstance(enum, list) else []


def labelled(text: str, label: str) -> list[str]:
    """The proper names right after a parameter's own name ("patient is Ada Ruiz", "Adopter: Mei-Lin Cho",
    "patient's my daughter Ana")."""
    after = re.finditer(rf"\b(?i:{re.escape(label)})(?:\s*[:=]|['’]s|\s+is|\s+named|\s+called)?\s+"
                        r"(?:(?i:my|our|his|her|their|the)\s+[a-z]+\s+)?"
                        r"([A-Z][\w’'-]+(?:\s+[A-Z][\w’'-]+){0,2})", _TITLE.sub("", text))
    return [m.group(1).strip() for m in after]


def _relative(text: str, m: re.Match) -> bool:
    """The match opens with a "that" after a noun phrase and before a verb: a relative clause ("a lamp that won't
    light"), not what is said ("tell him that", "word to Ada that", "tell the doctor that my dog ...", "a note that
    says ...")."""
    if not re.match(r"that\s+(?!(?:says|said|reads|goes|tells|i|i['’]\w+|you|he|she|it|we|they|my|your|his|her|its|"
                    r"our|their|the|a|an|this|these|those|there|one|some|all|both|each|every|no|none|any|"
                    r"\w*(?:one|body|thing)|two|three|four|five|six|seven|eight|nine|ten)\b)(?-i:[a-z])",
                    text[m.start():], re.I):
        return False
    return re.search(r"\b(?:a|an|the|my|this|these|those|his|her|our|their|your|some|one)\s+(?:[\w-]+\s+)?[\w-]+\s*$",
                     text[:m.start()], re.I) is not None


def _past_relatives(text: str) -> list[tuple[int, int]]:
    """Spans of relative clauses in the past tense, to the end of their sentence ("the telegram that came for ...",
    "a parcel that was sent to ..."): what they name is about a thing that already went."""
    from lemminflect import getAllInflections, getAllLemmas

    out = []
    for m in re.finditer(r"\bthat\s+([a-z]+)", text):
        word = m.group(1)
        past = word in ("was", "were") or any(
            word != x and word in getAllInflections(x, upos="VERB").get("VBD", ())
            for x in getAllLemmas(word).get("VERB", ()))
        if past and _relative(text, m):
            end = re.search(r"[.!?](?:\s|$)", text[m.end():])
            out.append((m.start(), m.end() + (end.start() if end else len(text))))
    return out


# the speaker's own name ("I'm Karim Benali", "my name's Ada Ruiz"), for a parameter that names a person
_SELF = re.compile(r"\b(?:I['’]m|I am|[Mm]y name(?:['’]s| is)|[Nn]ame['’]s|[Cc]all me|(?<!['’]s )[Nn]ame\s*[:=]"
                   r"|(?i:in|under)\s+my\s+name,?|(?i:in|under)\s+the\s+name(?:\s+of)?"  # ("the form can go in my name,
                   r"|(?i:put|book|write|enter|sign)\s+(?:it|this|that|them|me|us|the\s+[a-z]+)(?:\s+down)?\s+under)"
                   r"\s*"  # Mei Lin", "put the application under Ana Ruiz": the speaker's, not the animal's
                   r"([A-ZÁÉÍÓÚÑ][\w’'-]+(?:\s+[A-ZÁÉÍÓÚÑ][\w’'-]+){0,2})")
_HUMAN = re.compile(r"\b(?:person|people|guest|passenger|traveller|visitor|customer|client|owner|buyer|adopters?|"
                    r"signs?|who|applicant|sender|caller|player|holder)\b")


def _human(name: str, schema: dict) -> bool:
    """Does a string parameter name a person ("the person adopting", "the customer"), not a pet or a thing?"""
    return bool(_HUMAN.search(_about(name, schema)))


_ANIMAL = re.compile(r"\b(?:pets?|animals?|creatures?|beasts?|mounts?)\b")


def _titled(text: str, name: str, schema_name: str, schema: dict) -> str:
    """An animal's name keeps the title the line gives it ("Mr. Pickles", "Captain Fluff", "Lady Sprinkles"): a
    title names a person's rank, but a pet's is part of its name."""
    if not _ANIMAL.search(_about(schema_name, schema)):
        return name
    m = re.search(rf"(?<![\w.])((?:\w+\.?)\s+){re.escape(name)}\b", text)
    t = _TITLE.match(m.group(0)) if m else None
    if t and t.end() == len(m.group(1)) and valid(schema, f"{m.group(1)}{name}"):
        return f"{m.group(1)}{name}"
    return name


# a string parameter that holds a name (of a person or a pet: "patient"), so `_strings` prefers proper names for it;
# wider than `_HUMAN` (a person, never an animal), which decides where the speaker's own name goes
_PERSON = re.compile(r"\b(?:name|person|patient|guest|passenger|traveller|visitor|customer)\b")
_KIND_THEN_NAME = re.compile(r"\b(?i:my|our|his|her|their)\s+([A-ZÁÉÍÓÚÑ][\w’'-]+),\s+([A-ZÁÉÍÓÚÑ][\w’'-]+"
                             r"(?:\s+[A-ZÁÉÍÓÚÑ][\w’'-]+)?)")
_LOWER_NAME = re.compile(r"\b(?i:my|our|his|her|their)\s+([a-z]+)\s+([a-z]+)(?=\s*(?:[,.!?]|$)|\s+([a-z']+))")
_LEADS_ON = {"for", "in", "at", "to", "with", "on", "from", "until", "till", "til", "tonight", "today", "tomorrow"}


# where a line gives a name: "name: ", "name is", "named", "called", "under", "I'm", "to", "for", "dear", after a
# possessive and a kind of person ("to my uncle jorge ruiz")
_RELATIVE = ("wife husband spouse fiance fiancee fiancé fiancée brother sister son daughter mum mom mother dad father "
             "grandma grandmother grandpa grandfather granny uncle aunt auntie aunty cousin nephew niece colleague "
             "neighbour neighbor").split()  # (no "baby", "boy", "friend": a pet may be called so)
# what stands before a number said as an age ("he's", "I turned", "my daughter is"; `ages`)
_AGE_BEFORE = re.compile(r"(?:\b(?:aged?|turned|turning|turns|(?:he|she)\s*(?:['’]s|is)|i\s*(?:['’]m|am)|(?:"
                         + "|".join(_RELATIVE) + r"|kid|child|boy|girl)\s+is)\s+)$", re.I)
_GIVES_NAME = re.compile(r"\b(?:name\s*(?:[:=]|is\b|['’]s\b)|named|called|under|i['’]m|i am|call me|for|"
                         r"(?P<kin>(?:my|our|his|her|their)\s+(?:" + "|".join(_RELATIVE) + r"))|"
                         r"(?P<to>to\s*:|to|dear|^\W*(?:(?:pls|plz|please)\s+)?(?P<verb>[a-z]+)))"
                         r"\s+(?:(?:my|our|his|her|their|the)\s+(?:[a-z]+\s+)?)?(?=[a-z])", re.I)


def _unknown_names(text: str, to_whom: bool = False, exclude: set[str] = frozenset(),
                   kin: bool = False) -> list[str]:
    """Lower-case names where a line gives a name, when no lexicon knows the first word ("for lena voss at the
    inn", "name's tomek", "my fiancee ida moss"; for a recipient, "to my uncle jorge ruiz", "wire ida moss"): that
    word and up to two more that are names too or nouns ("jorge stone"), never a chat word ("pls"), a word a lexicon
    knows first ("for biscuit"), nor a slip of a word of `exclude` ("to bayswter lane", for a value "Bayswater
    Lane"). `kin`: only those said after a relative."""
    from lemminflect import getAllLemmas
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    out = []
    taken = {w for x in exclude for w in norm(x).split()}
    for m in _GIVES_NAME.finditer(text):
        if (m.group("to") and not to_whom) or (kin and not m.group("kin")):
            continue
        if m.group("verb") and "VERB" not in getAllLemmas(m.group("verb")):
            continue  # an order's verb, then whom it is for ("telegraph mary quill at ..."), for a recipient only
        words = re.match(r"[a-z][\w’'-]*(?:\s+[a-z][\w’'-]*){0,2}", text[m.end():])
        run = []
        for w in words.group(0).split() if words else []:
            if w.casefold() in _WORDS:
                break  # "for thirty days": a number, never a name
            known = _english(w) or w in _CHAT
            if run and (w in ENGLISH_STOP_WORDS or w in _LEADS_ON or w in _CHAT or
                        (known and ("NOUN" not in getAllLemmas(w) or _participle(w)
                                    or (w.endswith("s") and "VERB" in getAllLemmas(w))))):  # ("tomek needs")
                break
            if not run and known:
                break
            run.append(w)
        if run and any(w in taken or any(_one_slip(w, x) for x in taken) for w in norm(" ".join(run)).split()):
            continue  # (the name's own words, not the message's after it: "for my brother tomek saying come home")
        if run:
            out.append(" ".join(run))
    return list(dict.fromkeys(out))


def _participle(word: str) -> bool:
    """A verb's -ing form ("saying", "asking"): after a name it goes on with the line ("to my brother ivo brandt
    saying ..."), even where a lexicon also knows it as a noun ("a saying")."""
    from lemminflect import getAllLemmas

    return word.endswith("ing") and any(v != word for v in getAllLemmas(word).get("VERB", ()))


# whom a sentence opens by calling, before an order ("Uncle Bram, take the Blue Heron up the slip"): a run of
# capitalised words, a comma, then a verb in its base form
_CALLED = re.compile(r"(?:^|[.!?]\s+)((?:[A-Z][\w’'-]*\s+){0,2}[A-Z][\w’'-]*)\s*,\s*([a-z]+)\b")


def vocatives(text: str) -> set[str]:
    """Names a line calls its listener by before an order: never an argument."""
    from lemminflect import getAllLemmas

    return {m.group(1) for m in _CALLED.finditer(text) if m.group(2) in getAllLemmas(m.group(2)).get("VERB", ())
            and m.group(2) != "please" and not _english(m.group(1).split()[-1])
            and not _after_title(text[:m.start(1)])}


def _after_title(before: str) -> bool:
    """`before` ends with a title's full stop ("for Dr. "): what follows is the title's name, not a new sentence."""
    m = re.search(r"(?<![\w.])(\w+)\.\s*$", before)
    return m is not None and m.group(1).lower() in ABBREVIATIONS | {"jr"}


def _lower_names(text: str) -> list[str]:
    """Lower-case names said after a kind ("my gecko mango needs a checkup", "my dog waffle, 3pm"): the word
    after a possessive and a noun, when it is no verb, adverb, adjective or stop word and a verb, a preposition or a
    stop follows ("my donkey skip for a week"; "my dog really needs", "my cat just ate" give none)."""
    from lemminflect import getAllLemmas
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    out = []
    for m in _LOWER_NAME.finditer(text):
        kind, word, after = m.group(1), m.group(2), m.group(3)
        lemmas = getAllLemmas(word)
        verbs = lemmas.get("VERB", ())  # a verb's base form may name ("pip"), an inflected one does not ("needs")
        if "NOUN" not in getAllLemmas(kind) or word in ENGLISH_STOP_WORDS or kind in ENGLISH_STOP_WORDS or \
                set(lemmas) & {"AUX", "ADV", "ADJ"} or (verbs and word not in verbs):
            continue
        if after is None or after in _LEADS_ON or set(getAllLemmas(after.split("'")[0])) & {"VERB", "AUX"}:
            out.append(word)
    return out


# a parameter that names a thing, not a person or an animal
_THING = re.compile(r"\b(?:boat|ship|vessel|craft|barge|yacht|train|car|truck|ute|van|wagon|cart|book|title|work|"
                    r"item|room|place|shop|business|company)\b")
_GOING_TO = re.compile(r"\b(?:off|go(?:es|ing)?|went|gone|head(?:s|ed|ing)?|bound|travel\w*|fl(?:y|ying|ew)|"
                       r"driv\w*|mov\w*|back|over|across|way)\s+to\s+$|\b(?:bound|head(?:ed|ing)?|leaving)\s+for\s+$",
                       re.I)  # "off to Ostend", "on my way to Ostend", "bound for Ostend": a place
_PLACE_BEFORE = re.compile(r"\b(?:from|near|towards?|past|outside|via|out of|(?:i['’]m|i am|we['’]re|we are|"
                           r"(?:i|we)['’]ll be|(?:i|we) live|living|staying|based) (?:in|at))\s+(?:the\s+)?$", re.I)
_TO_WHOM = re.compile(r"\b(?:to|for)\s+(?:(?:my|our|his|her|their|the)\s+)?(?:[a-z]+\s+)?$")
_RECIPIENT = re.compile(r"\b(?:recipient|addressee|addressed|to whom|is for|receiv\w*)\b")
_UNDER = re.compile(r"(?:\b(?:it|them|that|us|me|booked|book|put|register(?:ed)?)\s+under|(?:^|(?<=[.!?])\s+)Under"
                    r"|\b(?:us|me|it|them|him|her|down)\s+(?:in\s+(?:the|your)\s+\w+\s+)?as)\s+"
                    r"((?:[A-Z]\.\s?)*[A-Z][\w’'-]+(?:\s+[A-Z][\w’'-]+){0,2})")  # ("Under D. Okafor, please.", "write
# us in the ledger as Ada Ruiz")


def named_as(text: str) -> list[str]:
    """Proper names the line gives as a name: after "named", "called", "under the name", "name of" or "put it
    under" ("put it under Ada Ruiz")."""
    plain = _TITLE.sub("", text)  # "under Mr Okafor": "Okafor"
    led = [_capitalised(m.group(1)) for m in (*_AFTER.finditer(plain), *_UNDER.finditer(plain))]
    return [x for x in led if x and norm(x) not in _STOP]


def _capitalised(words: str) -> str:
    """The leading run of capitalised words ("Kit Amsel for a week" → "Kit Amsel"; "D. Okafor" whole; "grace" → "")."""
    m = re.match(r"(?:[A-Z]\.\s?)*[A-ZÁÉÍÓÚÑ][\w’'-]*(?:\s+[A-ZÁÉÍÓÚÑ][\w’'-]*)*", words.strip())
    return "" if m is None or _PRONOUN.match(m.group(0).split()[0]) else m.group(0).strip(" .,!?;:")


def _english(word: str) -> bool:
    """Is `word` an English word (lemminflect's lexicon: "Please", "Book", "Pencil"), so that opening a sentence is
    why it is capitalised? A given name ("Rosa", "Tomas") is not."""
    from lemminflect import getAllLemmas
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    w = re.sub(r"['’]s$", "", word.casefold())  # "Name's Ada Ruiz": "name"
    return w in _STOP or w in ENGLISH_STOP_WORDS or bool(getAllLemmas(w))


# chat words no lexicon knows that are still no names ("PLS", "U", "GONNA")
_CHAT = frozenset("""pls plz thx ty u ur r ya yo lol omg tmrw tmr nite gonna wanna gotta gimme lemme ok okay hey hi
asap btw msg b4 cuz coz bc ppl pax n nd""".split())


def truecase(text: str) -> str:
    """A line shouted in capitals, in the case a name is found by: lower case, a capital opening each sentence and
    on each word no English lexicon knows ("SEND WORD TO LENA VOSS" → "Send word to Lena Voss"). Any other line
    as it is. A name that is also an English word ("GRACE") stays lower case."""
    if re.search(r"[a-zà-ÿ]", text) or len(re.findall(r"[A-ZÀ-Þ]{2,}", text)) < 2:
        return text
    low = text.lower()

    def word(m: re.Match) -> str:
        w = m.group(0)
        before = low[:m.start()]
        opens = re.search(r"(?:^|[.!?*:]\s*|\n)$", before.rstrip(" ")) is not None or not before.strip()
        base = "" if re.search(r"n['’]t$", w) else re.sub(r"['’](?:s|re|ll|d|ve|m)$", "", w)  # "won't", "voss's"
        if w == "i" or opens or (w not in _CHAT and base and not _english(base)):
            return w[:1].upper() + w[1:]
        return w
    cased = re.sub(r"[^\W\d_][\w’'-]*", word, low)
    # a word after a joiner within a name is the name's ("CAPO DI MARE" → "Capo Di Mare", though "mare" is English)
    return _JOINED.sub(lambda m: m.group(1) + m.group(2).upper(), cased)


_JOINED = re.compile(r"(\b[A-Z][\w’'-]*\s+(?i:" + "|".join(sorted(NAME_JOINERS - {"of", "the"})) + r")\s+)([a-z])")


def is_long(name: str, schema: dict) -> bool:
    """A parameter that holds a message rather than a name: long, or named so, or described so by the description's
    first noun ("the text of the telegram", "a message for the guide"; not "the person the message is for")."""
    return (schema.get("maxLength") or 0) > 80 or _message(name, schema)


def _message(name: str, schema: dict) -> bool:
    """A parameter named or described as a message (not only long: "the wound, in the player's words" is long)."""
    head = [w for w in norm(schema.get("description") or "").split() if w not in _STOP and w not in ("name", "s")]
    return bool(set(norm(name.replace("_", " ")).split()) & _LONG) or bool(head and head[0] in _LONG)


# lengths of time in minutes, and the spans that say them: "ten minutes", "a quarter of an hour", "a fortnight"
_MINUTES = {"minute": 1, "min": 1, "hour": 60, "hr": 60, "day": 1440, "night": 1440, "nite": 1440, "week": 10080,
            "fortnight": 20160}
_IDIOMS = ((re.compile(r"\b(?:a\s+)?quarter(?:\s+of)?\s+an?\s+hour\b", re.I), 15),
           (re.compile(r"\bhalf(?:\s+an|-an)?[\s-]hour\b", re.I), 30),
           (re.compile(r"\b(?:an|one)\s+hour\s+and\s+a\s+half\b", re.I), 90),
           (re.compile(r"\b(?:to|for)\s+(?:tonight|the\s+night)\b(?!\s+(?:and|n|&|\+)\s+(?:tomorrow|tmrw))", re.I),
            1440),
           (re.compile(r"\b(?:tonight|tonite)\s+(?:and|n|&|\+)\s+(?:tomorrow|tmrw)(?:\s+(?:night|nite))?\b", re.I),
            2880),  # ("tonight and tomorrow night": two nights)
           (re.compile(r"\b(?:(?:just|only)\s+)?for\s+today\b|\btoday\s+only\b", re.I), 1440),
           (re.compile(r"\b(?:(?:just|only)\s+)?overnight\b(?!\s+(?:train|coach|boat|ferry|express|mail|bus|"
                       r"run|haul|flight|shift|watch))", re.I), 1440))  # ("just overnight, back first thing")
_UNIT = re.compile(r"(?:\b|(?<=\d))(minute|min|hour|hr|day|night|nite|week|fortnight)s?\b|(?<=\d)(h|d|wk)s?\b", re.I)
_SHORT = {"h": "hour", "d": "day", "wk": "week"}  # "2h", "3d", "2wks": glued to the number
_ONE_UNIT = re.compile(r"\b(?:(?:a|an|one)(?:\s+(?:whole|entire|full))?|(?:the|all)\s+(?:whole|entire|full)|all"
                       r"|for\s+the)\s+$", re.I)


def durations(text: str) -> list[tuple[int, int, float]]:
    """(start, end, minutes) of each length of time in `text`: a number before a unit ("ten minutes", "3 nights",
    "a week", "a fortnight") or an idiom ("a quarter of an hour", "half an hour", "for the night", "just for
    today")."""
    found: list[tuple[int, int, float]] = []
    for rx, minutes in _IDIOMS:
        found += [(m.start(), m.end(), float(minutes)) for m in rx.finditer(text)]
    nums = spans(text)
    for m in _UNIT.finditer(text):
        if any(a <= m.start() < b for a, b, _ in found) or (m.start() and m.group(0)[0].isupper()):
            continue  # (inside an idiom; a capitalised word is a name: "the Day Coach")
        per = _MINUTES[(m.group(1) or _SHORT[m.group(2).lower()]).lower()]
        before = [n for n in nums if n[1] <= m.start() and not text[n[1]:m.start()].strip()]
        if before:
            found.append((before[-1][0], m.end(), before[-1][2] * per))
        elif m.group(1) and _ONE_UNIT.search(text[:m.start()]) and m.group(0).lower() == m.group(1).lower():
            found.append((m.start(), m.end(), float(per)))  # "a week", "the whole fortnight": one, in the singular
    return sorted(found)


# a time of day: "3pm", "8 a.m.", "18h", "9h30", "noon", "four in the afternoon", "nine this morning", "5 o'clock"
_CLOCK_PARAM = re.compile(r"\b(?:o'?clock|clock|time of day|am|pm|a\.m|p\.m|24-hour|noon)\b")
_AMPM = re.compile(r"(?<![\w.])(\d{1,2})(?:[:.](\d{2}))?\s*([ap])\.?\s?m\b\.?|(?<![\w.])(\d{1,2})h(\d{2})?(?!\w)"
                   r"|(?<![\w.:])(\d{1,2}):(\d{2})(?![\w:])", re.I)  # (and "13:00")
_AT = re.compile(r"(?:\b(?:at|around|by|before|after|from|until|til|till)|@)\s+(?:about\s+|around\s+)?$", re.I)
_NOON = re.compile(r"\b(?:noon|midday|mid-day|lunchtime)\b", re.I)
_PART_OF_DAY = re.compile(r"^\s*(?:o['’]?clock\s*)?(?:(?:in|this|tomorrow|on|during|one|monday|tuesday|wednesday|"
                          r"thursday|friday|saturday|sunday)\s+(?:the\s+)?)?"
                          r"(morning|afternoon|evening|night|tonight)\b", re.I)


def clock_param(name: str, schema: dict) -> bool:
    """Does an integer parameter hold an hour of the day (its name or description speaks of the clock: "hour on
    the 24-hour clock", "time of day", "3 pm is 15"), not a length of time?"""
    said = f"{name.replace('_', ' ')} {schema.get('description') or ''}".lower()
    return bool(_CLOCK_PARAM.search(said)) and (schema.get("maximum") or 24) <= 24


def clock_hours(text: str) -> list[tuple[int, int, float]]:
    """(start, end, hour 0-23) of each time of day said with its part of the day: "3pm" 15, "8 a.m." 8, "18h" 18,
    "noon" 12, "four in the afternoon" 16, "nine this morning" 9."""
    found = []
    for m in _AMPM.finditer(text):
        if m.group(1):
            h = int(m.group(1)) % 12 + (12 if m.group(3).lower() == "p" else 0)
        else:
            h = int(m.group(4) or m.group(6))
        if 0 <= h <= 23:
            found.append((m.start(), m.end(), float(h)))
    found += [(m.start(), m.end(), 12.0) for m in _NOON.finditer(text)]
    for a, b, v in spans(text):
        part = _PART_OF_DAY.match(text[b:])
        if part and v == int(v) and 1 <= v <= 12 and not any(x <= a < y for x, y, _ in found):
            late = part.group(1).lower() in ("afternoon", "evening", "night", "tonight") and v < 12
            found.append((a, b + part.end(), v + 12 if late else v))
    return sorted(found)


def _time_unit(name: str, schema: dict) -> float | None:
    """Minutes per unit of a number parameter that counts a length of time ("minutes", "how many nights")."""
    for w in _unit_words(name, schema):
        w = w[:-1] if w.endswith("s") else w
        if w in _MINUTES:
            return float(_MINUTES[w])
    return None


def extract_args(params: dict, text: str, exclude: set[str] = frozenset(), things: set[str] = frozenset(),
                 told: bool = False, cast: set[str] = frozenset()) -> dict:
    """The arguments the words give, each valid under its own schema (invalid candidates are not given).
    `exclude`: names that are never a free string (the character's own name). `things`: the nouns of the action's
    name ("lamp"): "a lamp" counts one for a parameter that counts (not for a length of time). `told`: a required
    message no marker gives may be what the line says about whom it names (`told_message`; off by default: the
    turn's `line_args` applies it once, to the whole line, after every clause has given its arguments). `cast`: the
    world's characters' names, never an animal's ("page Dr. Imre" names the vet, not the patient)."""
    props = params.get("properties") or {}
    args: dict = {}
    used: list[tuple[int, int, float]] = []
    enum_words: set[str] = set()
    for name, schema in props.items():
        if not isinstance(schema, dict):
            continue
        if "enum" in schema or "const" in schema:
            enum_words |= {x for x in schema.get("enum", [schema.get("const")]) if isinstance(x, str)}
            v = _enum(schema, text, set(args.values()))
            if v is not None and valid(schema, v):
                args[name] = v
    # a number inside a value already taken ("Cold Store Nine") is not another argument
    taken = [(m.start(), m.end()) for v in args.values() if isinstance(v, str)
             for m in re.finditer(re.escape(v), text, re.I)]
    if any(isinstance(v, dict) and is_long(k, v) for k, v in props.items()):
        taken += [m.span() for m in QUOTED.finditer(text)]  # "two of us are slow": the message's, not a count
    found = [n for n in spans(text) if not any(a <= n[0] and n[1] <= b for a, b in taken)
             and not _TIMES_OVER.match(text, n[1])]  # ("skied with your guides three times": how often, no count)
    times = durations(text)
    for name, schema in props.items():
        if name in args or not isinstance(schema, dict) or "enum" in schema or "const" in schema:
            continue
        types = schema.get("type")
        types = set(types if isinstance(types, list) else [types])
        if types & {"integer", "number"}:
            if clock_param(name, schema):  # "3pm", "noon", "four in the afternoon"; a bare "at 5" is 17 if 5 is not
                said = [(a, b, v) for a, b, v in clock_hours(text) if valid(schema, _as_type(schema, v))]
                if said:
                    args[name] = _as_type(schema, said[0][2])
                    used += [n for n in found if said[0][0] <= n[0] and n[1] <= said[0][1]]
                    continue
                bare = [(a, b, v if valid(schema, _as_type(schema, v)) else v + 12) for a, b, v in found
                        if v == int(v) and (a, b, v) not in used and _AT.search(text[:a])
                        and not any(x <= a < y for x, y, _ in times)]
                bare = [n for n in bare if valid(schema, _as_type(schema, n[2]))]
                if bare:
                    args[name] = _as_type(schema, bare[0][2])
                    used.append(next(n for n in found if n[0] == bare[0][0]))
                continue
            per = _time_unit(name, schema)
            if per is not None:  # "a quarter of an hour" for minutes, "a fortnight" for nights
                got = [(a, b, v / per) for a, b, v in times if (v / per).is_integer()]
                got = [n for n in got if valid(schema, _as_type(schema, n[2]))]
                if got:
                    args[name] = _as_type(schema, got[0][2])
                    used += [n for n in found if got[0][0] <= n[0] and n[1] <= got[0][1]]
                    continue
            # "lost four minutes": a length of time counts nothing (for a parameter in a unit of time, it was read in
            # that unit above: "three weeks" is no 3 days)
            counted = [n for n in found if not any(a <= n[0] and n[1] <= b for a, b, _ in times)]
            if per is not None:
                counted = [n for n in counted if not _of_things(text, n) and not _measure_after(text, n)]
            if _people(name, schema):  # "the three-hour one", "a 40-kilo dog": a measure of a thing, no head count
                counted = [n for n in counted if not re.match(r"-[^\W\d_]", text[n[1]:])]
            units = _unit_words(name, schema) | (_PARTY if _people(name, schema) else set())  # "six of us", "3 ppl"
            units -= {k.casefold() for k in props if k != name}  # "pump" in the litres' description is the pump's
            if "k" in units:  # "40k north" for a parameter in kilometres: forty, not forty thousand
                counted = [(a, b, v / 1000) if re.fullmatch(r"\d{1,3}k", text[a:b], re.I) else (a, b, v)
                           for a, b, v in counted]
            others = {w for k, v in props.items() if k != name and isinstance(v, dict) and "enum" not in v
                      and set(_types(v)) & {"integer", "number"} for w in _unit_words(k, v)}
            total = _total(text, counted) if _people(name, schema) and per is None else None  # "six of us all told"
            group = ([total], total[2]) if total else None
            group = group or (_roster(text, counted) or _groups(text, counted) if _people(name, schema) else None)
            if group is not None and valid(schema, _as_type(schema, group[1])):
                args[name] = _as_type(schema, group[1])
                used += group[0]
                continue
            for n in _number_order(text, counted, units, others):
                if n in used:
                    continue
                v = _as_type(schema, n[2] + (_with_me(text, n) if _people(name, schema) else 0))
                if v is not None and valid(schema, v):
                    args[name] = v
                    used.append(n)
                    break
            else:  # "a rope", "an oil flask": an article or "one" just before a value taken in the singular
                two = _as_type(schema, 2)
                if two is not None and valid(schema, two) and _counts(name, schema) and per is None and \
                        _people(name, schema) and _PAIR.search(text):
                    args[name] = two  # "my sister and me"
                    continue
                if valid(schema, _as_type(schema, 1)) and _counts(name, schema) and per is None and \
                        _people(name, schema) and _SOLO.search(text):
                    args[name] = _as_type(schema, 1)  # "just me", "travelling alone"
                    continue
                one = _as_type(schema, 1)
                measured = bool(units & _MEASURES)  # "how many kilometres": "a truck" is no distance of 1
                if one is not None and valid(schema, one) and _counts(name, schema) and per is None and \
                        ((_singular(text, args, props) and not _people(name, schema) and not measured) or
                         (_said_once(text, things) and not (_people(name, schema) and _WE.search(text))
                          and not measured) or _one_measure(text, name, schema)):
                    args[name] = one
        elif "string" in types:
            never = exclude | enum_words | {str(v) for v in args.values()} | vocatives(text) | {
                n for k, v in props.items() if k != name and isinstance(v, dict) and "string" in _types(v)
                for n in (k.replace("_", " "), *labelled(text, k.replace("_", " ")))}  # "Adopter: Mei-Lin Cho"
            # is not the animal's name, nor is "Adopter"
            if not is_long(name, schema) and any(is_long(k, v) for k, v in props.items() if isinstance(v, dict)):
                never |= set(_strings(text, set(), long=True)[:1])  # the message is not the recipient's name
            to_whom = _RECIPIENT.search(norm(f"{name} {schema.get('description') or ''}")) is not None
            person = _PERSON.search(norm(f"{name} {schema.get('description') or ''}")) is not None
            selves = [m.group(1) for m in _SELF.finditer(text) if norm(m.group(1)) not in never]
            if selves and not _human(name, schema):
                if any(_human(k, v) and "string" in _types(v)  # (a head count is no person's name: "people")
                       for k, v in props.items() if k != name and isinstance(v, dict)):
                    never |= set(selves)  # "I'm Karim Benali": the adopter's name, not the animal's
                selves = []
            animal = _ANIMAL.search(_about(name, schema)) is not None
            if animal:
                never |= cast | set(kin_names(text))
            pet = (person or animal) and not (to_whom or _human(name, schema) or is_long(name, schema))
            thing = _THING.search(_about(name, schema)) is not None
            if thing:  # "Will you and Tam see to her?": a helper, no boat
                never |= {m.group(1) for m in _WITH_YOU.finditer(text)}
            cands = _strings(text, never, is_long(name, schema), to_whom, name.replace("_", " "), person, lower=pet,
                             opening=pet and animal, unknown=(person or animal or to_whom or _human(name, schema))
                             and not is_long(name, schema), thing=thing)
            if thing:  # a thing's name is said with "the", before one that calls the listener ("Master Brun, the
                cands = sorted(cands, key=lambda c: _thing_rank(text, c))  # Gull's engine ...") or owns a noun
            for cand in [*selves, *cands]:
                if is_long(name, schema) and not _message(name, schema):  # a description, without its article,
                    if re.search(r"[.!?;]\s", cand):  # in one sentence ("an arrow wound in my shoulder")
                        continue
                    cand = re.sub(r"^(?:a|an|the|my|this|that|some)\s+(?=\S)", "", cand, flags=re.I)
                if valid(schema, cand):
                    args[name] = cand if is_long(name, schema) else _titled(text, cand, name, schema)
                    break
            else:  # no name: a parameter that is no name takes what the player describes ("my twisted ankle")
                if is_long(name, schema) and person and (schema.get("maxLength") or 81) <= 40:  # a few words, or a
                    cand = next((c for c in _strings(text, never, False, False, name.replace("_", " "), person)
                                 if valid(schema, c)), None)  # name unquoted ("carve HARUTO into the handle")
                    if cand is not None:
                        args[name] = cand
                        continue
                if to_whom and not is_long(name, schema):
                    said = [v for k, v in args.items() if isinstance(v, str) and is_long(k, props.get(k) or {})]
                    outside = text
                    for v in said:  # a name the message says too, named outside it ("In memory of my father
                        outside = outside.replace(v, " ")  # Imre, carve these words: 'Imre the seafarer'")
                    if outside != text:
                        keep = exclude | enum_words | {str(v) for v in args.values() if v not in said} | vocatives(text)
                        for cand in _strings(outside, keep, False, True, name.replace("_", " "), person, unknown=True):
                            if valid(schema, cand):
                                args[name] = _titled(text, cand, name, schema)
                                break
                        if name in args:
                            continue
                head = [w for w in _about(name, schema).split() if w not in _STOP][:2]  # ("the wound ..., in the
                # player's words": no person's)
                if not (person or animal or to_whom or pet or _HUMAN.search(" ".join(head)) or _message(name, schema)
                        or _THING.search(_about(name, schema)) or re.search(r"\bnames?\b", _about(name, schema))):
                    for cand in described(text, never):
                        if valid(schema, cand):
                            args[name] = cand
                            break
        elif "boolean" in types:  # "and gift wrap it" / "no gift wrap needed"; unsaid, it is left out
            v = _yes_no(name, text)
            v = _instead(schema, text) if v is None else v
            if v is not None and valid(schema, v):
                args[name] = v
    args = _message_subject(props, args, exclude)
    return told_message(params, args, text) if told else args


# what a player describes, in its own words (`described`)
_DET = frozenset("a an the my this that his her our their some both".split())
_PLACE_AFTER = frozenset("on in across along under over behind above below".split())
_NOT_DESCRIBED = frozenset("look favour favor bit moment minute while go lot way thing chance u ur pls".split())
_WORDISH = re.compile(r"[A-Za-z][A-Za-z'’-]*|[^\sA-Za-z]")


def described(text: str, exclude: set[str] = frozenset()) -> list[str]:
    """Noun phrases a line describes something by, best first, without their article or possessive: one with a
    place after it ("the bite on my leg", "a deep cut across my palm"), one a sentence opens with ("broken finger,
    needs setting", "split lip from the horse-fight"), then the others ("my twisted ankle"). A phrase runs up to four
    words, to a function word, a punctuation mark or a verb in the past or third person ("the gutting knife
    slipped"); a request's own noun ("have a look at") and a name in `exclude` are none. For a string parameter
    that names nothing (a wound, a fault, in the player's words), when the line gives no name."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    stop = ENGLISH_STOP_WORDS | _NOT_DESCRIBED

    def phrase(toks: list[str], i: int) -> tuple[list[str], int]:
        words = []
        while i < len(toks) and len(words) < 4 and toks[i][0].isalpha() \
                and re.split(r"['’]", toks[i].casefold())[0] not in stop \
                and not (words and _finite_verb(toks[i].casefold())):  # ("it's", "I've": a pronoun's)
            words.append(toks[i])
            i += 1
        return words, i

    bad = {norm(x) for x in exclude}
    placed, opening, plain = [], [], []
    for sentence in re.split(r"(?<=[.!?;:])\s+", text):
        toks = _WORDISH.findall(sentence)

        def place(j: int) -> str:  # "on my scalp", "across both palms" after a phrase that ends at j
            if j + 2 < len(toks) and toks[j].casefold() in _PLACE_AFTER and toks[j + 1].casefold() in _DET \
                    and toks[j + 2][0].isalpha() and toks[j + 2].casefold() not in stop:
                return f" {toks[j]} {toks[j + 1]} {toks[j + 2]}"
            return ""

        words, j = phrase(toks, 0)
        where = place(j)
        if words and (not _english_verb_first(words[0]) or _noun(words[0])) and where:
            placed.append(" ".join(words) + where)  # "Gash on my scalp from a falling oar, ..."
        elif len(words) > 1 and not _english_verb_first(words[0]):
            opening.append(" ".join(words))
        for i, tok in enumerate(toks):
            if tok.casefold() not in _DET:
                continue
            words, j = phrase(toks, i + 1)
            if not words:
                continue
            cand = " ".join(words)
            where = place(j)
            if where:
                placed.append(cand + where)
            else:
                plain.append(cand)
    out = []
    for cand in (*placed, *opening, *plain):
        if norm(cand) not in bad and cand not in out:
            out.append(cand)
    return out


def _noun(word: str) -> bool:
    """Can `word` be a noun ("gash", "bite", "cut"; not "sit")?"""
    from lemminflect import getAllLemmas

    return "NOUN" in getAllLemmas(word.casefold())


@lru_cache(maxsize=4096)
def _finite_verb(word: str) -> bool:
    """A verb in the past tense or the third person ("slipped", "opened"), and no noun ("sparks" is both)."""
    from lemminflect import getAllLemmas

    lemmas = getAllLemmas(word)
    return "VERB" in lemmas and "NOUN" not in lemmas and word not in lemmas["VERB"]


def _english_verb_first(word: str) -> bool:
    """Does a sentence opening with `word` open with a verb ("fix it", "can you"), not a described thing?"""
    from lemminflect import getAllLemmas

    lemmas = getAllLemmas(word.casefold())
    return "VERB" in lemmas and word.casefold() in lemmas["VERB"] and "ADJ" not in lemmas


_NO = re.compile(r"\b(?:no|not|without|never|nor|skip|none)\b|n['’]t\b"  # ("want" is no "won't")
                 r"|\b(?:do|does|did|ca|wo|is|are|was|were|have|has|had|should|would|could|need)nt\b", re.I)


_WANTS = {"needs", "need", "wants", "want", "requires", "require", "has", "gets", "with", "is"}


def _yes_no(name: str, text: str) -> bool | None:
    """A yes/no parameter from the words its name holds ("gift_wrap", "insurance"): said, it is true, unless a
    negation stands before it in its clause ("no gift wrap needed", "we don't want insurance") or just after it
    ("insurance not needed"); unsaid, None."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words = [w for w in name.replace("_", " ").split()  # "with_cabin", "is_express": the cabin, express
             if len(w) > 2 and w.lower() not in _STOP and w.lower() not in ENGLISH_STOP_WORDS]
    words = [w for w in words if w.lower() not in _WANTS] or words  # "needs_stitching": the stitching
    if not words:
        return None
    # a verb's -ing form is said in any of its forms ("stitch it up", "stitched")
    forms = [re.escape(w[:-3]) + r"\w*" if w.lower().endswith("ing") and len(w) > 6 else re.escape(w) for w in words]
    m = re.search(r"\b(?:" + r"\s+".join(forms) + r")(?:e?s)?\b", text, re.I)
    if m is None:
        return None
    before = " ".join(re.split(r"[,.;:!?]", text[:m.start()])[-1].split()[-4:])
    after = " ".join(re.split(r"[,.;:!?]", text[m.end():])[0].split()[:2])
    return not (_NO.search(before) or _NO.search(after))


_INSTEAD = re.compile(r"\b(?:instead of|rather than|in place of)\s+(?:the\s+|a\s+|an\s+)?([^\W\d_][\w'’ -]*)",
                      re.I)


def _instead(schema: dict, text: str) -> bool | None:
    """A yes/no parameter whose description names the alternative ("whether the party wants a cabin instead of deck
    passage"): false when the line says that alternative's first word ("two on deck to Velmar", "deck is fine")
    and no negation of it; otherwise None (unsaid)."""
    m = _INSTEAD.search(str(schema.get("description") or ""))
    word = m.group(1).split()[0] if m else ""
    if len(word) < 3 or word.lower() in _STOP:
        return None
    said = re.search(rf"\b{re.escape(word)}(?:e?s)?\b", text, re.I)
    if said is None:
        return None
    before = " ".join(re.split(r"[,.;:!?]", text[:said.start()])[-1].split()[-4:])
    return None if _NO.search(before) else False


# a message that opens with whom it is about ("my cat Noodle has eaten a lily", "Sir Fluff, my old tomcat,
# is limping badly"): the name, then what is told of it
_SUBJECT = re.compile(r"(?:(?i:my|our|his|her|their)\s+(?:[\w-]+\s+){0,2}?)?((?:[A-Z][\w]*\.?\s+)?[A-ZÁÉÍÓÚÑ][\w’'-]+"
                      r"(?:\s+[A-ZÁÉÍÓÚÑ][\w’'-]+)?)(?:\s*,\s*(?i:my|our|his|her|their|the)\s+[^,]{1,40},)?\s+(?=\S)")


def _message_subject(props: dict, args: dict, exclude: set[str]) -> dict:
    """A patient's or a pet's name that the line gives only as the subject of its message ("please tell the vet
    that my cat Noodle has eaten a lily"): the name to that parameter, what is told of it to the message.
    Never for a recipient or a person's own name ("tell them that Ada is late" is no patient)."""
    from lemminflect import getAllLemmas

    out = dict(args)
    for name, schema in props.items():
        if name in out or not isinstance(schema, dict) or "string" not in _types(schema) or is_long(name, schema):
            continue
        about = _about(name, schema)
        if not (_PERSON.search(about) or _ANIMAL.search(about)) or _human(name, schema) or _RECIPIENT.search(about):
            continue
        for key, said in args.items():
            m = _SUBJECT.match(said) if isinstance(said, str) and is_long(key, props.get(key) or {}) else None
            if m is None:
                continue
            who, rest = _TITLE.sub("", m.group(1)).strip(), said[m.end():]
            first = norm(rest.split()[0]).split(" ")[0] if rest.split() else ""
            marked = who != m.group(1).strip() or "," in m.group(0) or not said.startswith(m.group(1))
            if (_english(who) and not marked) or norm(who) in {norm(x) for x in exclude} or \
                    not set(getAllLemmas(first)) & {"VERB", "AUX"} or not valid(schema, who):
                continue
            if valid(props[key], rest):
                out[name], out[key] = _titled(said, who, name, schema), rest
                break
    return out


# a part of a message that asks the character for the action itself ("please get a vet NOW", "can u radio the
# doctor"): a request, a verb, and what the action is about as its object
_ASKS_FOR = re.compile(r"^\W*(?:(?:and|so|now|just)\s+)?(?:pls|plz|please|(?:can|could|would|will)\s+(?:you|u|ya)"
                       r"(?:\s+please)?)\s+(?:just\s+)?[a-z]+\s+(?:(?:the|a|an|our|my|your|that)\s+)?([\w'’-]+)",
                       re.I)
_PART = re.compile(r"(?<=[,.;!?])\s+")


def quoted(value: str) -> bool:
    """Is `value` (or all but its end) one quotation, said word for word?"""
    return QUOTED.fullmatch(value.strip().rstrip(".!?")) is not None


def message_alone(params: dict, args: dict, own: frozenset[str] | set[str]) -> dict:
    """`args` with each message cleared of what the line says around it to the character, not to its reader: a
    part (between commas or sentence ends) that asks for the action itself, its object one of the action's own
    words (`own`: stems of its name, description and examples), and what stands before it when that is only a few
    words ("78, pls radio the doctor, he's gone grey" → "he's gone grey"; "she's throwing up, please get a vet NOW"
    → "she's throwing up"); and an opening part that only holds another argument's value ("over the relay band.
    happy name day" → "happy name day" when the band is "relay band", an enum value). "missed the train, please send
    money" keeps its request: money is not what the action is about. A quoted message is left as it is."""
    from app.action_detect import stems

    props = params.get("properties") or {}
    out = dict(args)
    for key, value in args.items():
        schema = props.get(key)
        if not (isinstance(value, str) and isinstance(schema, dict) and is_long(key, schema)) or quoted(value):
            continue
        parts = [p for p in _PART.split(value.strip()) if p]
        asks = [i for i, p in enumerate(parts) if (m := _ASKS_FOR.match(p)) and stems(m.group(1)) & set(own)]
        if asks:
            i = asks[0]
            before, after = parts[:i], parts[i + 1:]
            if after and sum(len(p.split()) for p in before) <= 2:
                parts = after
            elif not after and before:
                parts = before
        others = [norm(str(v)) for k, v in args.items() if k != key and isinstance(v, str)
                  and isinstance(props.get(k), dict) and "enum" in props[k]]  # (a name may open a message)
        if len(parts) > 1 and any(o and o in norm(parts[0]) and len(norm(parts[0]).split()) <= len(o.split()) + 2
                                  for o in others):
            parts = parts[1:]
        said = " ".join(parts).rstrip(" ,;:")
        if said != value and valid(schema, said):
            out[key] = said
    return out


def told_message(params: dict, args: dict, text: str) -> dict:
    """`args` with each required message that no marker gave filled, when the line says something about a name it
    gave (`_told`): "Get the vet for Minou, she's been throwing up" tells "she's been throwing up". An optional
    note (`_note`) is filled by a closing remark about its subject (`_remark`), where the action has no recipient."""
    props = params.get("properties") or {}
    required = params.get("required") or []
    out = dict(args)
    for name, schema in props.items():
        if name in out or not isinstance(schema, dict) or "string" not in _types(schema) or not is_long(name, schema):
            continue
        if name in required:
            said = _told(text, [v for k, v in out.items() if isinstance(v, str) and k != name and not v.isupper()])
        else:  # (a message to somebody is no remark about them: "Name's Ada Ruiz, she keeps the inn" tells no message)
            to_whom = any(_RECIPIENT.search(norm(f"{k} {v.get('description') or ''}"))
                          for k, v in props.items() if isinstance(v, dict))
            said = _remark(text, out) if _note(name, schema) and not to_whom else None
        if said and valid(schema, said):
            out[name] = said
    return out


_WHAT_IT_IS = re.compile(r"^(?:(?:and|but|oh|also|btw)\s+)?(?:he|she|they|it)(?:['’]s|\s+is|\s+was)\s+(?:a|an)\s", re.I)
_REMARK = re.compile(r"^(?:(?:and|but|oh|also|btw)\s+)?(?:he|she|they|it)(?:['’](?:s|re|ll|d|ve))?\s+\w", re.I)


def _note(name: str, schema: dict) -> bool:
    """A parameter named or described as a note ("an optional note for the staff"), not a message to be sent
    (an optional message is given only when marked: "tell the doctor she's got chest pains")."""
    head = [w for w in norm(schema.get("description") or "").split() if w not in _STOP and w != "optional"]
    return bool(set(norm(name.replace("_", " ")).split()) & _NOTES) or bool(head and head[0] in _NOTES)


_NOTES = {"note", "notes", "remark", "remarks", "instructions", "comment", "comments"}


def _remark(text: str, args: dict) -> str | None:
    """What the line says last, about whom it is for, after everything else it gives: the parts (between commas or
    sentence ends) from the first that opens on a pronoun as its subject, when no value of `args` and no number
    among them is said in them or after them ("small run for Pickle, ten nights. she's scared of thunder" → "she's
    scared of thunder"; "Chorizo weighs three kilos. Could he board for ten nights?" has none: the weight says which
    run, and nothing follows the nights)."""
    parts = [p for p in _PART.split(text.strip()) if p]
    given = [norm(v) for v in args.values() if isinstance(v, str) and norm(v)]
    counts = {float(v) for v in args.values() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    for i, part in enumerate(parts):
        if not _REMARK.match(part) or _WHAT_IT_IS.match(part):
            continue  # ("She's a beagle cross, about 18 kilos": what it is, for the staff to see, no note)
        said = re.sub(r"^(?:and|but|oh|also|btw)\s+", "", " ".join(parts[i:]), flags=re.I).rstrip(" .,;:!")
        if len(said.split()) < 3 or said.endswith("?") or any(g in norm(said) for g in given) \
                or {v for _, _, v in spans(said)} & counts:
            return None
        return said
    return None


_NOT_TOLD = {"for", "at", "in", "on", "to", "with", "and", "or", "please", "about", "from", "into", "if", "so",
             "who", "whom", "whose", "which", "where", "when"}  # ("my brother Tom, who drowned ...": who he was)


def _told(text: str, names: list[str]) -> str | None:
    """What a line says about someone it names, when no colon, quote or "tell them" marks a message: the rest of
    the name's sentence ("my dog Rocket just ate a bar of chocolate", "for Minou, she's been throwing up"), or the
    next sentence when the name ends its own ("It's about Duchess. She collapsed on the walk."); never a question,
    and only a clause that starts like one (a verb or a pronoun, not "for me")."""
    from lemminflect import getAllLemmas

    for name in names:
        m = re.search(rf"(?<!\w){re.escape(name)}(?:['’]s(?=\s))?(?!\w)", text, re.I)
        if m is None:
            continue
        rest = text[m.end():].lstrip(" ,;:-–—")
        # what the name is, said beside it: "Pippin, my cat, she got hit", "Biscotti the ferret has been limping"
        rest = re.sub(r"^(?:(?:my|our|his|her|their|the)\s+(?:[\w'’-]+\s+){0,2}?[\w'’-]+\s*,\s*|the\s+[a-z]+\s+"
                      r"(?=(?:has|had|is|was|got|gets|keeps|won['’]?t|can['’]?t|isn['’]?t|hasn['’]?t)\b))", "", rest)
        if not rest:
            continue
        ended = rest[0] in ".!?"  # the name ends its sentence: the next one tells, if it speaks of them
        sentences = split_sentences(rest[1:].lstrip() if ended else rest)
        # the rest of the name's sentence; or the next sentence, when it speaks of them ("for old Mr Cranford in
        # room 4. He's gone all grey"; not "It's Poppy! Get the vet!", an order)
        last = len(sentences) == 1  # the sentence tried ends the line
        tries = [] if ended else sentences[:1]
        after = next(iter(sentences[0 if ended else 1:]), "")
        refers = re.match(r"(?:he|she|they|it|his|her|their|reckon)\b", after, re.I) is not None
        if refers or (ended and last and after):
            tries.append(after)
        for said in tries:
            said = said.strip().rstrip(".!").strip()
            words = said.split()
            if len(words) < 3 or said.endswith("?"):
                continue
            first = norm(words[0]).replace(" ", "'")
            lemmas = getAllLemmas(first.split("'")[0])
            if first in _NOT_TOLD:
                continue
            if ended and not refers:  # a sentence of its own that does not refer back: only a description of
                if (first in lemmas.get("VERB", ()) and "NOUN" not in lemmas) or not _happened(words):  # what
                    continue  # happened ("It's Poppy! Get the vet!" is an order, not what is wrong)
            elif not (lemmas.get("VERB") or lemmas.get("AUX") or lemmas.get("PRON")
                    or first.split("'")[0] in ("he", "she", "it", "they", "just", "we", "i")) and not (
                    last and _happened(words)):
                continue  # (a description that ends the line and tells what happened, with an inflected verb:
                # "Mia Tran, six years old, swallowed ...", "Dean Ruskin? fever of 40 and shaking all over")
            return said
    return None


def _happened(words: list[str]) -> bool:
    """Do these words tell something that happened or is happening (a verb in the past or in -ing)?"""
    from lemminflect import getAllLemmas

    for w in words:
        w = re.sub(r"[^\w'’-]", "", w).lower()
        verbs = getAllLemmas(w).get("VERB", ())
        if verbs and w not in verbs and (w.endswith(("ed", "ing")) or not w.endswith("s")):
            return True
    return False


_KINDS_OF_PEOPLE = re.compile(r"\s+(?:adults?|kids?|children|child|teens?|teenagers?|grown-?ups?|seniors?|"
                             r"pensioners?|students?|blokes?|men|women|boys?|girls?|babies|baby|toddlers?|mates?|"
                             r"friends?|people|persons?)\b", re.I)


def _groups(text: str, found: list[tuple[int, int, float]]) -> tuple[list, float] | None:
    """A party said as its kinds of people, each with its number ("two adults and two kids", "3 adults + our 3 kids"):
    (the numbers, their sum), or None."""
    said = [n for n in found if _KINDS_OF_PEOPLE.match(text[n[1]:])]
    for i, first in enumerate(said):
        run = [first]
        for n in said[i + 1:]:
            between = text[_KINDS_OF_PEOPLE.match(text[run[-1][1]:]).end() + run[-1][1]:n[0]]
            if not re.fullmatch(r"\s*(?:,|and|&|\+|plus|n)?\s*(?:and\s+)?(?:(?:our|my|the|their)\s+)?", between, re.I):
                break
            run.append(n)
        if len(run) > 1:
            return run, sum(n[2] for n in run)
    return None


def _measure_after(text: str, n: tuple[int, int, float]) -> bool:
    """A unit of measure follows the number ("a 30 kg shepherd", "a 30-kilo shepherd"): it weighs or measures, it
    counts no time."""
    m = re.match(r"(?:\s*|-)([^\W\d_]+)\b", text[n[1]:])
    return m is not None and m.group(1).lower() in _MEASURES


def _of_things(text: str, n: tuple[int, int, float]) -> bool:
    """The number counts things, not time: "a pair of boots", "two of my kids" (but "a couple of days")."""
    m = re.match(r"\s+of\s+(?:(?:the|my|our|your|his|her|their|these|those)\s+)?([^\W\d_]+)", text[n[1]:], re.I)
    return m is not None and _UNIT.fullmatch(m.group(1)) is None


def _counts(name: str, schema: dict) -> bool:
    """A parameter that counts things ("count", "quantity", "how many"), not one that numbers them (a berth)."""
    said = _about(name, schema)
    return re.search(r"\b(count|quantity|amount|how many|number of)\b", said) is not None


def _singular(text: str, args: dict, props: dict) -> bool:
    """A value of an enum parameter already taken is said with "a", "an", "one" or "single" just before it, in the
    singular as the enum spells it ("Sell me a rope": one; "some ropes": not said)."""
    return _said_once(text, [v for name, v in args.items() if isinstance(v, str)
                             and isinstance(props.get(name), dict) and "enum" in props[name]])


_PAIR = re.compile(r"\b(?:(?:me|myself) (?:and|n|&) (?:my|our) [^\W\d_]+"
                   r"|(?:my|our) [^\W\d_]+ (?:and|n|&) (?:me|i|myself)"
                   r"|(?:for|with) (?:him|her) (?:and|&) (?:his|her) (?!own\b)(?![^\W\d_]*[^s]s\b)[^\W\d_]+(?! and))\b",
                   re.I)  # ("me and my wife", "for her and her maid")
_TIMES_OVER = re.compile(r"\s+times\b", re.I)
_SOLO = re.compile(r"\b(?:(?:just|only) (?:for )?(?:me|myself)(?! and)|by myself|for myself(?! and)|"
                   r"(?:me|myself) alone|"
                   r"on (?:my|his|her|their) own|solo|"
                   r"(?:^|a |one )(?:bunk|berth|seat|bed|place|spot|ticket|passage|pass|cabin) for me(?! and)\b|"
                   r"(?:travel(?:s|l?ing|led)?|go(?:es|ing)?|rid(?:es|ing)|com(?:es|ing)) alone)\b",
                   re.I)
_PEOPLE = {"people", "person", "persons", "passenger", "passengers", "guest", "guests", "traveller", "travellers",
           "traveler", "travelers", "party", "heads", "riders", "rider", "visitors", "visitor"}


# a party said as its members ("me, the wife and our three kids": 5; "me and the missus": 2): each person one,
# "my parents" two, a number before people ("our three kids") its number
_KIN = ("wife husband missus hubby partner spouse fiance fiancee fiancé fiancée boyfriend girlfriend brother sister "
        "son daughter mum mom mother dad father grandma grandmother grandpa grandfather gran granny nan nana uncle "
        "aunt auntie aunty cousin nephew niece friend mate pal buddy colleague neighbour neighbor kid child baby boy "
        "girl lad lass teenager teen apprentice companion workmate grandkid grandchild grandson granddaughter pupil "
        "student youngster").split()
_KIN_NAME = re.compile(r"\b(?i:my|our|his|her|their)\s+(?i:" + "|".join(_RELATIVE) + r")\s*,?\s+"
                       r"((?:[A-Z]\.\s?)?[A-ZÁÉÍÓÚÑ][\w’'-]+(?:\s+[A-ZÁÉÍÓÚÑ][\w’'-]+){0,2})")


def kin_names(text: str) -> list[str]:
    """Names the line gives to a relative ("my wife Sophie Laurent", "My mom, Lucie Bergeron,", "my son tomek"): a
    person's, never an animal's."""
    return [m.group(1) for m in _KIN_NAME.finditer(text)] + _unknown_names(text, kin=True)


_KIN_MANY = {"child": "children", "baby": "babies", "buddy": "buddies", "wife": "wives", "aunty": "aunties",
             "nana": "nanas", "grandchild": "grandchildren"}
_KIN_PLURAL = [_KIN_MANY.get(w, w + "s") for w in _KIN]
_KIN_TWO = {"parents": 2, "grandparents": 2, "twins": 2, "folks": 2, "in-laws": 2}
_MEMBER = re.compile(r"\b(?:(?:the|my|our|his|her|your)\s+(?:(?:old|little|young|eldest|youngest|oldest|elder|older|"
                     r"younger|baby|big|wee|dear|best)\s+)?(?P<kin>" + "|".join(_KIN) + r")|(?:the|my|our|his|her|your)"
                     r"\s+(?P<two>" + "|".join(_KIN_TWO) + r")|(?P<me>me|myself|I(?!['’]))"
                     r"|(?P<kin1>grandma|grandpa|granny|gran|nan|nana|mum|mom|dad)"
                     r"|(?P<bare>" + "|".join(_KIN) + r"))\b", re.I)  # (a bare one, "me + wife", only after another)
_MEMBERS_OF = re.compile(r"\s+(?:[^\W\d_]+\s+)?(?:" + "|".join(_KIN_PLURAL) + r")\b|"  # ("nine people": a total)
                         r"\s+(?:young|little|wee)\s+ones\b|"  # ("our three young ones")
                         + _KINDS_OF_PEOPLE.pattern.replace("|people|persons?", ""), re.I)
_JOINS = re.compile(r"\s*(?:,\s*)?(?:(?:and|n|&|\+|plus|with)\s+)?", re.I)
_OWNED = re.compile(r"(?:the|my|our|his|her|your)\s+$", re.I)


def _roster(text: str, found: list[tuple[int, int, float]]) -> tuple[list, float] | None:
    """A party said as its members, joined as a list is ("me, the wife and our three kids", "me and the missus",
    "me + wife"):
    (the numbers it used, how many people), or None. The last join is a conjunction ("me, my friend" is a vocative);
    a person without a number counts one, "my parents" two, a number before people ("our three kids") its number."""
    matched = list(_MEMBER.finditer(text))
    bare = {m.start() for m in matched if m.group("bare")}
    members = [(m.start(), m.end(), _KIN_TWO[m.group("two").lower()] if m.group("two") else 1, None) for m in matched]
    for n in found:
        if _MEMBERS_OF.match(text[n[1]:]):
            owned = _OWNED.search(text[:n[0]])
            members.append((owned.start() if owned else n[0], n[1] + _MEMBERS_OF.match(text[n[1]:]).end(), n[2], n))
    members.sort()
    for i in range(len(members)):
        if members[i][0] in bare:
            continue
        run = [members[i]]
        for m in members[i + 1:]:
            between = text[run[-1][1]:m[0]]
            if m[0] < run[-1][1] or not between.strip() or not _JOINS.fullmatch(between):
                break
            run.append(m)
        last = text[run[-2][1]:run[-1][0]] if len(run) > 1 else ","
        if len(run) > 1 and re.search(r"\w|&|\+", last) and any(m[3] is None for m in run):
            return [m[3] for m in run if m[3] is not None], sum(m[2] for m in run)
    return None


_TOTAL_AFTER = re.compile(r"\s+(?:of us\b|(?:(?:people|persons|souls|heads|passengers|guests|travell?ers|riders)\s+)?"
                          r"(?:all told|in all|altogether|all up|in total|total)\b)", re.I)
_TOTAL_BEFORE = re.compile(r"\b(?:party|group|total) of\s+$", re.I)
_CORRECTED = re.compile(r"\b(?:make|change) (?:it|that)(?: to)?\s+$", re.I)


def said_total(params: dict, text: str) -> dict:
    """Each parameter that counts people, given the party's size the line states as its total ("that's six of us all
    told", "a party of five", "seven in all") or corrects ("tickets for me and my brother ... no wait, his wife's
    coming too, make it three"): a total outranks the numbers of its members told elsewhere."""
    found = spans(text)
    fixed = [x for x in found if _CORRECTED.search(text[:x[0]])]  # "... no wait, make it three": the last word
    n = fixed[-1] if fixed else _total(text, found)
    out = {}
    for name, schema in (params.get("properties") or {}).items():
        if n is not None and isinstance(schema, dict) and _people(name, schema) and _time_unit(name, schema) is None:
            v = _as_type(schema, n[2])
            if v is not None and valid(schema, v):
                out[name] = v
    return out


def _total(text: str, found: list[tuple[int, int, float]]) -> tuple[int, int, float] | None:
    """The first number of `found` said as a party's total, outside quotes (see said_total)."""
    taken = [m.span() for m in QUOTED.finditer(text)]
    return next((n for n in found if n[2] >= 2 and not any(a <= n[0] and n[1] <= b for a, b in taken)
                 and (_TOTAL_AFTER.match(text[n[1]:]) or _TOTAL_BEFORE.search(text[:n[0]]))), None)


_ME_AND = re.compile(r"\b(?:(?:(?:my|our) [^\W\d_]+|[A-Z][a-z]+) (?:and|n|&) (?P<two>i|me|myself) "
                     r"(?:and|n|&|plus|with) |(?:i|me|myself) (?:and|n|&|\+|plus|with) )(?:my |our |the |his |her )?$",
                     re.I)
_AND_ME = re.compile(r"^(?: [^\W\d_]+){1,2}? (?:and|n|&|plus) (?:i|me|myself)\b", re.I)


def _with_me(text: str, n: tuple[int, int, float]) -> int:
    """The people a counted party leaves out of its number: "me and my two mates" (3), "my wife and I and our three
    teenagers" (5), "two friends and me" (3)."""
    m = _ME_AND.search(text[:n[0]])
    if m:
        return 2 if m.group("two") else 1
    return 1 if _AND_ME.match(text[n[1]:]) else 0


# a group speaks: "we need a guide", "a guide for my lot" does not count one of them
_WE = re.compile(r"\b(?:we|us|our|ours|my (?:lot|crew|party|group|family|people|gang|mob|team|folk|men|lads))\b", re.I)
_PARTY = {"us", "people", "persons", "ppl", "pax", "heads"}  # words that count a party in a line


def _people(name: str, schema: dict) -> bool:
    """A parameter that counts people ("how many passengers travel")."""
    return bool(set(_about(name, schema).split()) & _PEOPLE)


def _one_measure(text: str, name: str, schema: dict) -> bool:
    """One of the measures the parameter counts in, said with "a" ("a box of hooks", for a quantity of "boxes of
    hooks or metres of canvas"; "a sho of sake", for "how many sho of it")."""
    units = {w for w in _unit_words(name, schema) if w.endswith("s")}
    about = _about(name, schema)
    for m in re.finditer(r"\b(?:a|an|one|single)\s+([^\W\d_]+)\s+of\b", text, re.I):
        w = m.group(1).casefold()
        if w not in _WORDS and ({w + "s", w + "es"} & units or  # a measure whose plural is its singular ("a sho of
                                re.search(rf"\b(?:how many|number of)\s+{re.escape(w)}\b", about)):  # sake")
            return True
    return False


def _said_once(text: str, things) -> bool:
    """One of `things` said in the singular with "a", "an", "one" or "single" just before it ("a lamp")."""
    said = norm(text)
    return any(re.search(rf"\b(?:a|an|one|single)\s+{re.escape(norm(t))}(?!\w)", said) for t in things if norm(t))


def tells_whole(params: dict, args: dict) -> bool:
    """`args` give every required argument and a message among them: the line tells all this action needs, in its
    own words, so a value of another character's action it also names ("word to Ada in <a ticket's town>. The
    message is: ...") asks nothing of that character."""
    props = params.get("properties") or {}
    return complete(params, args) and any(isinstance(v, str) and isinstance(props.get(k), dict) and is_long(k, props[k])
                                          for k, v in args.items())


def missing(params: dict, args: dict) -> list[str]:
    """Required parameters the arguments lack, in the schema's order."""
    return [r for r in params.get("required") or [] if r not in args]


def complete(params: dict, args: dict) -> bool:
    """All required arguments present and the whole object valid against the schema."""
    return not missing(params, args) and valid(params, args)
