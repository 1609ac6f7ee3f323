"""Reply quality a player would notice: length, loops, answer-first, clean text, broken character, invented
specifics, the character's signature phrases, and (with a model) fluency.

Pure functions of strings and lists, so the A/B harness, `eterna eval facts` and `eterna eval quality` share them;
all sentence, word, name and number work is `retrieval.text`'s. `summarise` turns per-reply rows into the figures
a report prints (median/p90 of numbers, the rate of each boolean). Only `fluency` needs a model, given loaded.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

import numpy as np

from app.evaluation.metrics import squad_normalise
from retrieval.text import (
    EVERYDAY,
    FUNCTION_WORDS,
    NAME_JOINERS,
    NUMBER_WORDS,
    first_sentence,
    markup_problems,
    numbers,
    proper_names,
    split_sentences,
    words,
)

# --- length and loops -----------------------------------------------------------------------------------------------


def word_count(text: str) -> int:
    return len(words(text))


def _norm(text: str) -> str:
    """Lower case, accents composed, every non-word character a space: for phrase matching."""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(re.sub(r"[\W_]+", " ", text).split())


def repeats(text: str) -> bool:
    """Does the reply loop? True when a word 3-gram (lower-cased, punctuation stripped) occurs twice, or a sentence
    (normalised) occurs twice: "No, no, no, no.", "Walked? No. Walked? No."."""
    toks = [w.lower() for w in words(text)]
    grams = Counter(zip(toks, toks[1:], toks[2:], strict=False))
    if grams and max(grams.values()) > 1:
        return True
    sentences = Counter(s for s in map(_norm, split_sentences(text)) if s)
    return bool(sentences) and max(sentences.values()) > 1


# --- answer first, clean text ---------------------------------------------------------------------------------------


def _strip_openers(text: str, openers: list[str] | tuple[str, ...]) -> str:
    stripped = text.lstrip()
    for opener in sorted(openers, key=len, reverse=True):
        if opener and stripped.lower().startswith(opener.lower()):
            return stripped[len(opener):].lstrip(" ,:;—–-")
    return stripped


def answer_first(text: str, golds: list[str], *, openers: list[str] | tuple[str, ...] = ()) -> bool:
    """A gold answer (SQuAD-normalised: lower case, no punctuation or articles) is in the first sentence.

    `openers`: the character's opening phrases ("Halt."), skipped first so that a voice marker is not the
    "first sentence"."""
    first = f" {squad_normalise(first_sentence(_strip_openers(text, openers)))} "
    return any(f" {g} " in first for g in map(squad_normalise, golds) if g)


def clean_problems(text: str) -> list[str]:
    """Why the reply is not clean prose: leftover markdown, HTML, fragments, unterminated end, unbalanced marks."""
    return markup_problems(text)


def clean(text: str) -> bool:
    return not markup_problems(text)


# --- breaking character ---------------------------------------------------------------------------------------------

_AI = re.compile(r"""(?ix)
    \bas\s+an?\s+(?:ai|a\.i\.|artificial\s+intelligence|(?:large\s+)?language\s+model|(?:ai\s+|virtual\s+|digital\s+)?
        assistant|chat\s?bot|bot)\b
  | \b(?:large\s+)?language\s+model\b | \bLLM\b
  | \bI(?:'m|’m|\s+am)\s+(?:just\s+|only\s+|merely\s+|simply\s+|not\s+)?(?:an?\s+)?(?:ai|a\.i\.|(?:ai\s+|virtual\s+
        |digital\s+)?assistant|chat\s?bot|bot|(?:computer\s+)?program)\b
  | \bopen\s?ai\b | \bchat\s?gpt\b | \bgpt-?\d | \bmy\s+(?:training\s+data|programming|knowledge\s+cutoff)\b
  | \b(?:trained|developed|created)\s+by\s+(?:open\s?ai|researchers|engineers)\b
""")
_NAME_RUN = r"([^\W\d_][\w'’-]*(?:\s+(?:(?:de|del|la|of|the|van|von|y)\s+)?[^\W\d_][\w'’-]*){0,3})"
_CLAIM = re.compile(rf"(?:\bmy\s+name\s+is|\bname's|\bcall\s+me|\bI\s+am\s+called|\bI(?:'m|’m)\s+called"
                    rf"|\bI\s+am|\bI(?:'m|’m))\s+{_NAME_RUN}", re.IGNORECASE)


def _parts(name: str) -> set[str]:
    """The words of a name that identify it (joiners and articles dropped), lower-cased."""
    return {w.lower() for w in words(name)} - NAME_JOINERS - FUNCTION_WORDS - {"el", "il", "le"}


def _claims(text: str) -> list[str]:
    """Names the speaker gives itself: "my name is X", "call me X", "I am X", "I'm X" with X capitalised."""
    out = []
    for m in _CLAIM.finditer(text):
        run = m.group(1).split()
        # keep the capitalised words (and joiners between them): "Captain Elianor, the ..." -> "Captain Elianor"
        kept: list[str] = []
        for w in run:
            if w[0].isupper():
                kept.append(w.rstrip(".,;:!?"))
                if w[-1] in ".,;:!?":
                    break
            elif w.lower() in NAME_JOINERS and kept:
                kept.append(w)
            else:
                break
        while kept and kept[-1].lower() in NAME_JOINERS:
            kept.pop()
        if kept and not all(w.lower() in FUNCTION_WORDS | EVERYDAY for w in kept):
            out.append(" ".join(kept))
    return out


def breaks(text: str, *, name: str, other_names: list[str], foreign_words: list[str]) -> list[str]:
    """Ways the reply breaks character; [] when it does not.

    - AI/assistant talk ("as an AI", "language model", "I'm just a program", "OpenAI");
    - claiming another name: "my name is X" / "I am X" / "call me X" where X is not the character's own `name`
      or made of its parts ("Captain Vell" for "Captain Orsino Vell"), or names one of `other_names` (the rest
      of the cast). A capitalised word after "I am" that is not a name ("I am English") is counted too;
    - words from another world: whole-word, case-insensitive hits of `foreign_words`."""
    problems = [f"AI talk: {m.group(0)!r}" for m in _AI.finditer(text)]
    own = _parts(name)
    for claim in _claims(text):
        words_of_claim = _parts(claim)
        other = any(claim.lower() == o.lower() or (words_of_claim & _parts(o)) - own for o in other_names)
        if other or not words_of_claim <= own:
            problems.append(f"claims another name: {claim!r}")
    for word in foreign_words:
        if word.strip() and re.search(rf"(?<!\w){re.escape(word.strip())}(?!\w)", text, re.IGNORECASE):
            problems.append(f"foreign word: {word!r}")
    return problems


# --- invented specifics ---------------------------------------------------------------------------------------------


def _number_forms(token: str) -> set[str]:
    """A number and its other spelling: "twelve" <-> "12"."""
    forms = {token.lower()}
    if token.lower() in NUMBER_WORDS:
        forms.add(str(NUMBER_WORDS[token.lower()]))
    forms |= {w for w, v in NUMBER_WORDS.items() if str(v) == token}
    return forms


def _fold(word: str) -> str:
    """Lower case, no accents, no possessive: "Íñigo's" -> "inigo"."""
    word = re.sub(r"['’]s$", "", word.lower())
    return "".join(c for c in unicodedata.normalize("NFKD", word) if not unicodedata.combining(c))


# capitalised words that name no one, beside EVERYDAY's: interjections and a pronoun's contractions, capitalised
# after a stage direction ("(laughs) Ah, no worries.", "(pauses) You're an excellent doctor")
_NOT_NAMES = EVERYDAY | {w.replace("'", q) for w in ("ah", "oh", "hey", "hi", "hello", "you're", "i'm", "it's",
                                                     "we're", "they're") for q in "'’"}


def known_specifics(allowed: str) -> frozenset[str]:
    """The folded words and numbers of `allowed`, as `invented_specifics` compares them (compute once, reuse)."""
    return frozenset({_fold(w) for w in words(allowed)} | {n.lower() for n in numbers(allowed)})


def invented_specifics(text: str, allowed: str, known: frozenset[str] | None = None) -> list[str]:
    """Proper names and numbers of the reply found neither in `allowed` (persona, style and lore the caller gives;
    compared case- and accent-insensitively) nor among everyday capitalised words (I, weekdays, months, Sir...).
    A multiword name counts as present when each of its words is; "twelve" and "12" are the same number. `known`:
    `known_specifics(allowed)` computed beforehand (then `allowed` is not read)."""
    known = known_specifics(allowed) if known is None else known
    out = []
    for name in sorted(proper_names(text)):
        parts = [_fold(w) for w in words(name) if w.lower() not in NAME_JOINERS]
        if not all(p in known or p in _NOT_NAMES for p in parts):
            out.append(name)
    for number in sorted(numbers(text)):
        if not _number_forms(number) & known:
            out.append(number)
    return out


# --- voice ----------------------------------------------------------------------------------------------------------

_QUOTED = re.compile(r"\"([^\"\n]+)\"|“([^”\n]+)”|«([^»\n]+)»|‘([^’\n]+)’|(?<!\w)'([^'\n]+?)'(?!\w)")
_ADDRESS = re.compile(r"(?:addresses|calls|names)\s+(?:the\s+)?(?:player|listener|reader|user)s?\s+(?:as\s+)?"
                      r"(?:[\"“«'‘]([^\"”»'’\n]+)[\"”»'’]|([^\W\d_][\w'’-]*))", re.IGNORECASE)


def signature_phrases(style_text: str) -> list[str]:
    """The phrases a character's style description names: every quoted phrase ("Halt.", 'Move along, reader.',
    “...”, «...»: openers, closers, pet words), and the form of address after "addresses the player as" /
    "calls the player" / "calls the listener" (quoted or a single word). A quoted single function word
    ("we") is left out: it would match any reply. [] when the style names none."""
    found = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(style_text)]
    for m in _ADDRESS.finditer(style_text):
        word = m.group(1) or m.group(2)
        if word and word.lower() not in FUNCTION_WORDS and word.lower() not in {"by", "with", "their", "its"}:
            found.append(word)
    out: list[str] = []
    for phrase in (p.strip() for p in found):
        key = _norm(phrase)
        if key and key not in FUNCTION_WORDS and key not in map(_norm, out):
            out.append(phrase)
    return out


def signature_hits(generated: str, phrases: list[str]) -> int:
    """How many of `phrases` occur (case- and punctuation-insensitive, whole words) in `generated`.

    Pass only the MODEL-GENERATED part of a reply: markers or sentences the pipeline added itself (an extracted
    answer wrapped in the character's opener and closer) would otherwise count as the model's voice."""
    text = f" {_norm(generated)} "
    return sum(1 for p in dict.fromkeys(map(_norm, phrases)) if p and f" {p} " in text)


def in_voice(text: str, phrases: list[str]) -> bool:
    """A signature phrase is present and the reply does not loop (a looping reply is never in voice).
    Like `signature_hits`, give it the model-generated part only."""
    return signature_hits(text, phrases) > 0 and not repeats(text)


# --- fluency (model) ------------------------------------------------------------------------------------------------


def fluency(texts: list[str], model, tokenizer, *, length: int = 16,
            prompt: str = "Here is something a character said:", batch_size: int = 16) -> list[float | None]:
    """Mean log-probability per token of each text's first `length` tokens under a causal LM (transformers model
    and tokenizer, already loaded, in eval mode), read after the neutral `prompt` (whose tokens are not scored).

    Matched length on purpose: a mean over whole texts rewards short, bland and repeated text. A text shorter
    than `length` tokens gets None. Every scored sequence is prompt + `length` tokens, so batches need no padding.
    """
    import torch

    if length < 1:
        raise ValueError("length must be at least 1")
    head = tokenizer(prompt)["input_ids"]  # the tokenizer's own special tokens (a BOS where it uses one)
    if not head:
        raise ValueError("fluency needs a prompt (or a tokenizer that adds a BOS token): the first text token "
                         "must have a context to be scored")
    jobs: list[tuple[int, list[int]]] = []
    for i, text in enumerate(texts):
        ids = tokenizer(" " + text.strip(), add_special_tokens=False)["input_ids"]
        if len(ids) >= length:
            jobs.append((i, ids[:length]))
    scores: list[float | None] = [None] * len(texts)
    device = next(model.parameters()).device
    with torch.inference_mode():
        for b in range(0, len(jobs), batch_size):
            batch = jobs[b:b + batch_size]
            ids = torch.tensor([head + t for _, t in batch], device=device)  # (B, P + L)
            logits = model(input_ids=ids).logits[:, len(head) - 1:-1].float()  # (B, L, V): predicts the text
            logp = torch.log_softmax(logits, dim=-1)
            token_logp = logp.gather(-1, ids[:, len(head):, None]).squeeze(-1)  # (B, L)
            for (i, _), value in zip(batch, token_logp.mean(dim=1).tolist(), strict=True):
                scores[i] = float(value)
    return scores


# --- summary --------------------------------------------------------------------------------------------------------


def summarise(rows: list[dict]) -> dict:
    """Report figures over per-reply rows ({"words": 31, "repeats": False, "fluency": -3.2, "problems": [...]}).

    For each key: booleans give `<key>_rate` (share True); numbers give `<key>_median` and `<key>_p90`; lists give
    `<key>_rate` (share non-empty). None values are left out, and `<key>_n` says how many rows counted when
    fewer than all did. Other values (strings) are skipped. `n` is the number of rows."""
    out: dict = {"n": len(rows)}
    keys = list(dict.fromkeys(k for r in rows for k in r))
    for key in keys:
        values = [r[key] for r in rows if r.get(key) is not None]
        if not values:
            continue
        if all(isinstance(v, bool) for v in values):
            out[f"{key}_rate"] = round(float(np.mean(values)), 4)
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[f"{key}_median"] = round(float(np.median(values)), 4)
            out[f"{key}_p90"] = round(float(np.percentile(values, 90)), 4)
        elif all(isinstance(v, (list, tuple, set)) for v in values):
            out[f"{key}_rate"] = round(float(np.mean([bool(v) for v in values])), 4)
        else:
            continue
        if len(values) < len(rows):
            out[f"{key}_n"] = len(values)
    return out
