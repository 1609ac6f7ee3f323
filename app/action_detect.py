"""What a line says about the character's declared actions, from the cast file only: request forms, the action's
own words, templated paraphrases.

    paraphrases(action)            # "Can you take me across the lake?", "I need you to ...": embedded beside examples
    vocabulary(actions, speaker)   # {name: stems only that action's description, examples, params and values use}
    request(cues, clause)          # "can you", "for me", "X me ...", and not a question for information (informs)
    Evidence(...).asks()           # the decision, thresholds below

A world may declare two or three examples per action; the paraphrases make its description a request in the
usual English forms, so a line phrased far from the examples still meets one. A clause that is a request
directed at the character (the `request` cues, and none of the `inform` ones) and names a word only this action's
declaration uses (its verb, a value of its params) asks for it even when it resembles no example; its arguments
then decide accepted or incomplete (an unknown value becomes an ask). A question for information never does.
Thresholds: see docs/benchmarks.md, "Actions" (chosen on one development world, checked on the other).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from retrieval.lexical import english_stemmer
from retrieval.text import split_sentences, typed_sentences

if TYPE_CHECKING:
    from app.actions import ActionSpec
    from app.cues import Cues

STRONG = 0.65  # cosine to an action's examples that means "asks for it", unless the router firmly says otherwise
ROUTER_FLOOR = 0.1  # ... that is, unless the router's probability of `action` is below this
ROUTER_ACTION = 0.5  # the router calls the clause an `action` ...
JOINT = 0.65  # ... and cosine + ROUTER_WEIGHT x that probability reaches this
ROUTER_WEIGHT = 0.3
REQUEST_COS = 0.5  # a request directed at the character, this close to the action's examples or paraphrases ...
REQUEST_WORDS = 1  # ... or naming this many words only the action's declaration uses
MARGIN = 0.02  # lead over the next action of the same character
WORDS_ONLY = 0.45  # below this cosine, a request found by the action's own words alone needs one of its arguments

# words that say nothing about which action: function words, the generic verbs of any request
_GENERIC = frozenset(ENGLISH_STOP_WORDS - {"see"}) | {  # ("see": "to be seen", a service as much as a word)
    "need", "want", "like", "get", "got", "give", "take", "bring", "make", "let", "put", "go", "come", "help", "ask",
    "please", "player", "player's", "number", "thing", "something", "someone", "somewhere", "just", "quick", "right",
    "now", "way", "d", "ll", "s", "t", "m", "re", "ve", "would", "could", "can", "will", "shall", "may", "might",
    "must", "i'd", "i'll", "i'm", "you", "me", "us", "one", "two", "three", "four", "five", "six", "seven", "eight",
    "nine", "ten", "dozen", "couple", "pair", "few", "lot", "time", "today", "here", "there", "mind", "dear", "kind",
    "chance", "favour", "favor", "quickly", "sure", "okay"}
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)?")


stemmer = lru_cache(maxsize=1)(english_stemmer)  # optional: without PyStemmer, words are compared as written


@lru_cache(maxsize=8192)
def _lemmas(word: str) -> tuple[str, ...]:
    """The verb base forms lemminflect's lexicon gives `word` (itself, when it is one: "pencil"; "see" for "seen")."""
    from lemminflect import getAllLemmas

    return getAllLemmas(word, upos="VERB").get("VERB", ())


def _verb_lemmas(word: str) -> tuple[str, ...]:
    """The base forms of an irregular verb form ("seen" → "see", "sold" → "sell"), which a stemmer leaves apart."""
    return tuple(x for x in _lemmas(word) if x != word)


def stems(text: str, lemmas: bool = True) -> set[str]:
    """The content words of `text` and the base forms of its irregular verbs ("I'd like him seen" meets "see you"),
    lower case, stemmed (Snowball English), generic words left out. `lemmas` False: no base forms, so each word of
    the text is one stem (a count of the stems two texts share counts words)."""
    found = [m.group(0).casefold().replace("’", "'") for m in _WORD.finditer(text or "")]
    words = [w for w in (*found, *(x for w in found if lemmas for x in _verb_lemmas(w)))
             if w not in _GENERIC and len(w) > 1]
    st = stemmer()
    return set(st.stemWords(words)) if st is not None else set(words)


def _doing_for_me(description: str) -> str:
    """The description as a request's verb phrase: "Take the player across" → "take me across"."""
    d = description.strip().rstrip(".")
    d = re.sub(r"\bthe player's\b", "my", d, flags=re.I)
    d = re.sub(r"\bthe player\b", "me", d, flags=re.I)
    return d[:1].lower() + d[1:]


_TEMPLATES = ("Can you {d}?", "Could you {d} for me?", "Please {d}.", "I need you to {d}.", "I want you to {d}.",
              "Would you {d}?", "{D}, would you?")


def paraphrases(action: ActionSpec) -> list[str]:
    """The description in the usual forms of a request, made from the cast file alone."""
    d = _doing_for_me(action.description)
    return [t.format(d=d, D=d[:1].upper() + d[1:]) for t in _TEMPLATES]


_PLACE = re.compile(r"\s(?:from|at|in|into|inside|on|of|through|across|to|toward|towards|within|near|behind|under|"
                    r"over|beside|by)\s.*$", re.I)


def service(description: str) -> str:
    """The description's verb phrase without where or whence: "Sell the player goods from the market stalls." →
    "Sell the player goods" (a place word says where, not which service)."""
    return _PLACE.sub("", " " + description.strip().rstrip("."), count=1).strip()


def described_words(action: ActionSpec) -> frozenset[str]:
    """The stems of the action's name, whole description and examples (not its parameters'): what it is about
    ("the Long Mule's bunk bay", "the Scree Loop"), which describes none of its values (`by_description`). Once per
    declaration: a turn asks for it for every part of the line."""
    return _described(action.name, action.description, tuple(action.examples))


@lru_cache(maxsize=1024)
def _described(name: str, description: str, examples: tuple[str, ...]) -> frozenset[str]:
    return frozenset(stems(" ".join([name.replace("_", " "), description, *examples])))


def declared_words(action: ActionSpec) -> set[str]:
    text = [action.name.replace("_", " "), service(action.description), *action.examples]
    for name, schema in (action.params.get("properties") or {}).items():
        text.append(name.replace("_", " "))
        if isinstance(schema, dict):
            text.append(str(schema.get("description") or ""))
            text += [str(v) for v in schema.get("enum") or [] if isinstance(v, str)]
    return stems(" ".join(text))


def vocabulary(actions: list[ActionSpec], speaker: str = "") -> dict[str, frozenset[str]]:
    """Per action, the stems only its own declaration uses among the character's actions (a word two actions
    share tells them apart no more than a generic one), without the words of the `speaker`'s name (a line that
    names the character asks for nothing by it)."""
    own = stems(speaker)
    words = {a.name: declared_words(a) - own for a in actions}
    seen: dict[str, int] = {}
    for ws in words.values():
        for w in ws:
            seen[w] = seen.get(w, 0) + 1
    return {name: frozenset(w for w in ws if seen[w] == 1) for name, ws in words.items()}


def named(action: ActionSpec, text: str) -> bool:
    """The line names the action itself ("call open_gate ..."). A name that is one plain word ("escort") is an
    ordinary word of the line ("Escort that stray cat out", "the room you escort guests to"): it counts among the
    action's own words, not as its name."""
    if re.fullmatch(r"[^\W\d_]+", action.name):
        return False
    return re.search(rf"(?<![\w-]){re.escape(action.name)}(?![\w-])", text, re.I) is not None


def informs(cues: Cues, clause: str) -> bool:
    """A question for information ("tell me", "explain", "can I ask why", a clause that opens with a question
    word), or a story of the past ("used to", "last night", "two days ago", "My father held the gate for years"): no
    action, however close to one it is. A time of the past after "since" is how long a state has lasted, not a story
    ("Get the vet, he hasn't eaten since yesterday")."""
    from app.action_args import QUOTED

    clause = QUOTED.sub('"…"', clause)  # a quoted message is not the player's own question or story
    sentences = typed_sentences(clause)
    told_when = cues.find("narration", clause)
    narrated = told_when is not None and re.search(rf"\bsince\s+{re.escape(told_when)}", clause, re.I) is None
    return narrated or any(_asks_to_know(cues, s) for s in sentences) \
        or (len(sentences) == 1 and told(sentences[0], cues))  # (a story beside a request: the request's clause)


def _asks_to_know(cues: Cues, sentence: str) -> bool:
    """The sentence asks for information, unless it opens with an order and only then says why: "throw the runes
    for me, I need to know if I'll live through the winter"."""
    if cues.find("inform", sentence) is None:
        return False
    head = _SEGMENT.split(sentence, maxsplit=1)[0]
    return head == sentence or cues.find("inform", head) is not None or cues.find("request", head) is None \
        or not imperative(cues, head)


def own_order(cues: Cues, clause: str, own: frozenset[str], values: bool) -> bool:
    """A phrase that usually asks for information ("teach me", "show me how") is an order when its verb is one only
    this action's declaration uses and the clause names one of the action's values: "teach me axe fighting" to a
    character who teaches fighting skills; "teach me about the old wars" and "teach me how the seals work" still
    inform, and so does a story or a question word. `own`: the action's own stems (`vocabulary`); `values`: the
    clause names a value of the action's enums."""
    if not values or cues.find("narration", clause) is not None:
        return False
    sentences = typed_sentences(clause)
    hits = [cues.find("inform", s) for s in sentences]
    if not any(hits) or any(h is not None and not stems(h) & own for h in hits):
        return False
    return not (len(sentences) == 1 and told(sentences[0], cues))


_SUBJECTS = frozenset("i he she they we it someone somebody everyone everybody nobody".split())
_DETERMINERS = frozenset("my his her their our your the a an that this some one".split())
_ADVERBS = frozenset("once already just never always even also only finally really actually first then".split())
# verbs whose past tense still asks ("I wanted ...", "I was hoping ..."), and modals
_STILL_ASKS = frozenset("be have do get want need hope wonder like love mean think wish can will shall may must"
                        .split())


def _past_only(word: str) -> bool:
    """`word` is only a past-tense verb ("sent", "held"; not "put", which is also a base form, nor "wanted")."""
    from lemminflect import getAllInflections

    w = word.casefold()
    if w in _lemmas(w):
        return False
    return any(w in getAllInflections(x, upos="VERB").get("VBD", ()) and x not in _STILL_ASKS for x in _lemmas(w))


# ("so well", "so much": a degree, not "so" that goes on to ask)
_AFTER_STORY = re.compile(r"[,;:]\s*|\s+(?:so(?!\s+(?:well|much|many|badly|good|bad|hard|fast|long|far|often|\w+ly)\b)"
                          r"|and|but|then)\s+", re.I)


def _asks_after(cues: Cues, sentence: str) -> bool:
    """A later part of the sentence asks: "Ana broke her arm, book her in", "..., but could you send another?"."""
    for part in _AFTER_STORY.split(sentence)[1:]:
        part = re.sub(r"^\W*(?:(?:so|and|but|then)\s+)?", "", part, flags=re.I)
        if cues.find("request", part) is not None:  # "could you ...", "please ...", "I need ..."
            return True
        first = re.match(r"\W*(?:please\s+)?(([^\W\d_]+).*)", part)
        if first is None:
            continue
        word = first.group(2).casefold()
        if word not in _SUBJECTS and _service_verb(first.group(1)) and not _past_only(word):
            return True
    return False


def told(sentence: str, cues: Cues) -> bool:
    """A sentence that tells what someone did: a subject (a pronoun, "my father", a capitalised name) and then a
    verb in the past tense ("My grandfather sent a letter to the king once"). A story, not a request."""
    rest = sentence[_OPENER.match(sentence).end():]
    toks = _WORD.findall(rest)
    if len(toks) < 2:
        return False
    first = toks[0].casefold()
    if first in _SUBJECTS:
        at = [1]
    elif first in _DETERMINERS:
        at = [2, 3, 4]  # after a noun of one to three words
    elif toks[0][:1].isupper() and not _base_verb(toks[0]) and not re.search(r"['’]", toks[0]):
        at = [1, 2]  # after a name of one or two words
    else:
        return False
    for i in at:
        while i < len(toks) and toks[i].casefold() in _ADVERBS:
            i += 1
        if i >= len(toks):
            return False
        if _past_only(toks[i]):
            return not _asks_after(cues, rest)
        if _present(toks[i].casefold()):
            return False  # "The mayor wants it mended": the present tense, however past what follows
        if _lemmas(toks[i].casefold()) and not toks[i][:1].isupper() and first not in _DETERMINERS:
            return False
    return False


# what opens a sentence before its verb: a vocative or two ("Captain, ", "Ray, my friend, "), politeness, filler
_OPENER = re.compile(r"^\W*(?:[\w.'’-]+(?:\s[\w.'’-]+)?,\s*){0,2}(?:(?:please|just|now|so|ok|okay|go on and|quick|then)"
                     r",?\s+)*", re.I)
# verbs whose imperative is talk, not a request for a service ("thank you", "look, ...", "wait", "never mind")
_NOT_SERVICE = frozenset("""thank look listen wait see hear know think guess mind imagine remember forget say tell
excuse pardon forgive welcome love like hate wish hope believe trust relax calm stop sorry be have do let try
consider suppose picture""".split())
# ... and "hold" or "hang" as "wait" ("hold on", "hold it", "hang tight"); "hold the train" is a service
_WAIT = re.compile(r"(?:hold|hang)\s+(?:on|it|still|tight|up|off|back|fire|your)\b", re.I)


def _service_verb(rest: str) -> bool:
    """The text opens with a verb's base form that is not one of talk or of waiting."""
    first = re.match(r"[^\W\d_]+", rest)
    return first is not None and first.group(0).casefold() not in _NOT_SERVICE and _WAIT.match(rest) is None \
        and _base_verb(first.group(0))


# "I have business upstairs, so take me up": a reason, then the request
_THEREFORE = re.compile(r",\s*(?:so|then)\s+", re.I)
_TAIL_ORDER = re.compile(r",\s*([^\W\d_]+\s+(?:it|them|this|that|these|those|him|her)(?:\s+(?:up|back|out|down|for me|"
                         r"please|pls))?)\W*$", re.I)  # a verb and its pronoun closing the sentence after a comma


@lru_cache(maxsize=4096)
def _base_verb(word: str) -> bool:
    """Can `word` be a verb's base form (lemminflect's lexicon: "pencil", "hand", "lead"; not "ropes", "nice", nor
    "saw", the past of "see")?"""
    from lemminflect import getAllInflections

    w = word.casefold()
    # the past tense of another verb reads as a story, not a request: "Saw the gate swing", "Found a key"
    return w in _lemmas(w) and not any(w in getAllInflections(x, upos="VERB").get("VBD", ()) for x in _verb_lemmas(w))


def imperative(cues: Cues, clause: str) -> bool:
    """A sentence of the clause, or its part after ", so" or ", then", opens with a verb's base form after an
    optional vocative or "please" ("Pencil me in for Tuesday.", "Captain, lead on.", "It's late, so take me up"),
    and the verb is not one of talk ("thank you", "look, ...")."""
    sentences = split_sentences(clause)
    tails = [m.group(1) for s in sentences if (m := _TAIL_ORDER.search(s))]  # "my tanto's gone dull, sharpen it"
    for sentence in (*(part for s in sentences for part in _THEREFORE.split(s)), *tails):
        rest = sentence[_OPENER.match(sentence).end():]
        if cues.find("social", sentence) is not None:
            continue
        if _service_verb(rest) or (_VERB_OBJECT.match(sentence) and _service_verb(sentence.lstrip(" *\"'"))):
            return True  # ("Mend it, and ...": a verb and its object, not a vocative)
    return False


_VERB_OBJECT = re.compile(r"^\W*[^\W\d_]+\s+(?:it|them|me|us|this|that|these|those|him|her)\s*,", re.I)


# verbs that ask the listener to pass words on, not to do a service ("could you tell the keeper of the gate ...")
_TALK = frozenset("tell say ask remind warn explain describe mention thank greet inform".split())
_MODAL_YOU = re.compile(r"(?:can|could|would|will|won['’]?t|wouldn['’]?t)\s+(?:you|u|ya)\s+(?:please\s+|just\s+)*"
                        r"([^\W\d_]+)", re.I)


def request_verb(clause: str) -> str | None:
    """The verb a request puts to the listener: "could you tell ..." → "tell", "Set my watch ..." → "set"."""
    rest = clause[_OPENER.match(clause).end():]
    m = _MODAL_YOU.search(rest)
    if m is not None:
        return m.group(1).casefold()
    first = re.match(r"[^\W\d_]+", rest)
    return first.group(0).casefold() if first is not None and _base_verb(first.group(0)) else None


def by_values_only(action: ActionSpec, clause: str, own: frozenset[str]) -> bool:
    """The clause meets the action only in values of its parameters ("the north gate"), and its request's verb is
    one of talk, not the action's ("could you tell the keeper of the north gate that ...")."""
    found = stems(clause) & own
    values = stems(" ".join(str(v) for schema in (action.params.get("properties") or {}).values()
                            if isinstance(schema, dict) for v in schema.get("enum") or [] if isinstance(v, str)))
    verb = request_verb(clause)
    if not found or not found <= values or verb not in _TALK:
        return False
    return not (stems(verb) & declared_words(action) - values)


_RELAY = re.compile(r"\b(tell|ask|remind|warn)\s+(?!(?:me|us)\b)(?:[\w'’-]+\s+){1,5}?to\s+([^\W\d_]+)", re.I)


def relayed(action: ActionSpec, clause: str) -> bool:
    """An order for somebody else, passed through the character ("Tell the porter at gate 4 to stop blocking the
    way"): neither the verb of talk nor the order's own verb is one of the action's declaration."""
    m = _RELAY.search(clause)
    if m is None or request_verb(clause) != m.group(1).casefold() or not m.group(2).islower() or \
            not _base_verb(m.group(2)):
        return False  # ("get word to Captain Ines Vale": a name, not an order)
    return not (stems(f"{m.group(1)} {m.group(2)}") & declared_words(action))


_THANKS = frozenset("cheers thanks thank you thx ta please pls plz ok okay mate".split())  # a part that only thanks
_SEGMENT = re.compile(r"\s*[,;:–—]\s*|\s+-+\s+")
# a subject or the verb "to be": a statement about something, not an order said as a noun phrase
_STATES = frozenset("""i you he she it we they there is are was were be been am isn't aren't wasn't weren't it's that's
there's i'm you're we're they're he's she's""".split())


_LABEL = re.compile(r"\b(?:reads|says|goes)\s*:?\s*(?=quotation\b)", re.I)
# "the horse's name is Storm", "her name's Moss": a name given as a label, no statement
_NAME_LABEL = re.compile(r"\b(?:(?:the|my|his|her|its|their|our)\s+[\w-]+['’]s\s+|(?:his|her|its|their)\s+)?"
                         r"name(?:['’]s|\s+is)\s+(?=[A-ZÁÉÍÓÚÑ])", re.I)


def terse(clause: str, action: ActionSpec, declared: set[str], aliases: dict | None = None,
          descriptions: dict | None = None) -> bool:
    """An order said as a noun phrase ("adult pass for a fortnight", "north route for 2 tmrw?"): a part of the
    clause between commas or dashes opens with a number or a word of the action's declaration, has no subject, no
    verb "to be" and no other verb in the past or third person ("my adult son phones every day" tells), and gives
    the action every argument it requires (at least one), a kind named by its lore alias too ("Eight sho of First
    Snow"), said as the lore describes it ("six of the comfrey-and-linen ones") or by its measure ("twelve ells").
    A past form that is also a noun is the noun after a determiner or a preposition ("for my caravan crew").
    `declared`: the action's `declared_words`; `aliases`: its `lore_aliases`; `descriptions`: its
    `lore_descriptions`."""
    from app.action_args import QUOTED, SAYING, complete, is_long, numbers, spans

    def args_of(text: str) -> dict:
        return order_args(action, text, aliases, descriptions)

    if not action.params.get("required"):
        return False
    # a quotation is one part, and the verb that labels it ("text reads: '...'") is no statement
    masked = _NAME_LABEL.sub("name ", _LABEL.sub("", QUOTED.sub(" quotation ", clause)))
    if any(isinstance(v, dict) and is_long(k, v) for k, v in (action.params.get("properties") or {}).items()):
        said = SAYING.search(masked)  # "A letter for Ada Ruiz saying the rent has been paid": the message's verbs
        masked = masked if said is None else masked[:said.start(1)] + "quotation"  # are no statement
    segs = [seg for seg in _SEGMENT.split(masked) if _WORD.search(seg)
            and not {w.casefold() for w in _WORD.findall(seg)} <= _THANKS]
    plain = []  # each segment: said without a subject, "to be" or a finite verb?
    for seg in segs:
        toks = [w.casefold().replace("’", "'") for w in _WORD.findall(seg)]
        first = re.match(r"\W*(?:(?:just|only|simply)\s+)?([\w'’-]+)", seg, re.I)  # ("Just an unpowered site")
        plain.append(first is not None and not set(toks) & _STATES and
                     not any(_finite(w) and not _noun_here(toks, i) for i, w in enumerate(toks)
                             if not stems(w) & declared))
        if not plain[-1]:
            continue
        lead = first.group(1)
        if not (numbers(lead) or lead.casefold() in ("a", "an") or stems(lead) & declared or
                any(a == first.start(1) for a, _, _ in spans(seg))):  # ("half a dozen" opens with a number)
            continue
        args = args_of(seg)
        if args and complete(action.params, args):
            return True
    # an order over several such parts ("North Quay, five passengers, name of Ada Ruiz", "My grey, Tamsin,
    # large stall, two nights"): every part plain, one opening with a word of the declaration or a number, and
    # the parts together give every required argument
    leads = [re.match(r"\W*([\w'’-]+)", g).group(1) for g in segs]
    if len(segs) > 1 and all(plain) and any(stems(w) & declared or numbers(w) for w in leads):
        args = args_of(clause)
        return bool(args) and complete(action.params, args)
    return False


_DETERMINERS = frozenset("a an the my your his her its our their this that these those some any every each no".split())
_PREPOSITIONS = frozenset("for with of on in at from to by about under over off into onto".split())


def _noun_here(toks: list[str], i: int) -> bool:
    """Is the word at `i`, a past form that is also a noun in its own spelling ("crew", "wound", "saw"), said as
    the noun: right after a determiner, or inside a phrase a preposition opens ("for my caravan crew")? Not "the
    mast fell", where nothing but its subject comes before it."""
    from lemminflect import getAllLemmas

    if toks[i] not in getAllLemmas(toks[i]).get("NOUN", ()):
        return False
    return (i > 0 and toks[i - 1] in _DETERMINERS) or any(t in _PREPOSITIONS for t in toks[:i])


def order_args(action: ActionSpec, text: str, aliases: dict | None = None, descriptions: dict | None = None,
               never: frozenset[str] = frozenset()) -> dict:
    """The arguments `text` gives the action by its words alone: extracted, a kind by its lore alias or
    description, a kind by the description's wording (`by_wording`). `never`: names that describe no value (the
    listener's)."""
    from app.action_args import aliased, by_description, by_wording, extract_args

    args = by_description(action.params, text, aliased(action.params, text, extract_args(
        action.params, text, exclude=set(never)), aliases), descriptions, set(never), declared=described_words(action))
    return by_wording(action.params, text, args)


TYPED = ("integer", "number", "boolean")


def gives_all(action: ActionSpec, text: str, aliases: dict | None = None, descriptions: dict | None = None,
              never: frozenset[str] = frozenset()) -> bool:
    """`text` gives every argument the action requires, two or more of them values of a type (an enum, a number, a
    yes or no): a request that says all of that asks for the action however far its words are from the action's
    own ("my bike's done ... 30 clicks, any chance of a pickup?" gives the tow its vehicle and its distance); or it
    quotes the message the action requires. `never`: the listener's names."""
    from app.action_args import QUOTED, complete, is_long

    required = action.params.get("required") or []
    props = {k: v for k, v in (action.params.get("properties") or {}).items() if isinstance(v, dict)}
    quoted = bool(required) and QUOTED.search(text) is not None and all(
        k in props and is_long(k, props[k]) for k in required)  # ("put 'Sigrid made this' on my spindle", to the
    # rune carver: the words to carve are quoted); free strings otherwise say little (any name, any words)
    typed = [k for k in required if k in props and ("enum" in props[k] or props[k].get("type") in TYPED)]
    if len(typed) < 2 and not quoted:
        return False
    args = order_args(action, text, aliases, descriptions, never)
    return bool(args) and complete(action.params, args)


@lru_cache(maxsize=4096)
def _present(word: str) -> bool:
    """Is `word` a verb in the third person of the present ("wants", "needs")?"""
    from lemminflect import getAllInflections

    return any(word in getAllInflections(x, upos="VERB").get("VBZ", ()) for x in _lemmas(word) if x != word)


@lru_cache(maxsize=4096)
def _finite(word: str) -> bool:
    """Is `word` a verb in the past tense or the third person ("phones", "gave"), and not its base form?"""
    from lemminflect import getAllInflections

    return any(word in getAllInflections(x, upos="VERB").get(tag, ()) for x in _lemmas(word) if x != word
               for tag in ("VBZ", "VBD"))


def request(cues: Cues, clause: str) -> bool:
    """A request directed at the listener ("can you", "for me", "X me ...", an imperative), and not a question for
    information. A formula of courtesy ("Excuse me", "Forgive me, it's been a long day": the `courtesy` cues) is
    shaped like one and asks for nothing."""
    polite = cues.find("courtesy", clause)
    clause = clause if polite is None else clause.replace(polite, " ", 1)
    return (cues.find("request", clause) is not None or imperative(cues, clause)) and not informs(cues, clause)


@dataclass
class Evidence:
    """What one line (its best clause) says about one action."""

    cosine: float  # best cosine to the action's examples, description and paraphrases
    p_action: float  # the router's probability of `action`
    is_request: bool
    words: int  # stems of the clause only this action's declaration uses
    named: bool
    informs: bool = False  # a question for information
    beside_question: bool = False  # another clause of the line is a question for information

    def asks(self) -> bool:
        if self.named:
            return True
        if self.informs:
            return False
        if self.beside_question and not self.is_request:
            # "They say you walk guests to the north room. How many tables are there?": a statement that sets up a
            # question is its context, however close to an action; a request beside a question still acts
            return False
        if self.cosine >= STRONG and self.p_action >= ROUTER_FLOOR:
            return True
        if self.router_joint():
            return True
        return self.is_request and (self.cosine >= REQUEST_COS or self.words >= REQUEST_WORDS)

    def router_joint(self) -> bool:
        """The router calls the clause an `action`, and its probability and the cosine together reach JOINT."""
        return self.p_action >= ROUTER_ACTION and self.cosine + ROUTER_WEIGHT * self.p_action >= JOINT

    def by_words_only(self) -> bool:
        """Asked for only through words of the action's own declaration: not named, not close to its examples, not
        the router's `action` ("Open your heart to me" shares "open" with opening a gate, and nothing else)."""
        if self.named or self.cosine >= WORDS_ONLY:  # (WORDS_ONLY < STRONG: the strong-cosine rule cannot apply)
            return False
        return not self.router_joint()

    def rank(self) -> float:
        """Which action, when more than one of the character's is asked for: cosine, then its own words."""
        return self.cosine + 0.05 * min(self.words, 3) + (1.0 if self.named else 0.0)
