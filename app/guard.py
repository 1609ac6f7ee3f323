"""The guard on both sides of a turn.

Input: normalises the player's text and rejects what cannot be served, with a typed error saying why; flags lines
that address the model instead of the character. Output: a generated reply must not speak as a model, take another
identity or recite its instructions (`output_flag`), checked sentence by sentence as it streams (`SentenceGate`).
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING

from retrieval.errors import InputError
from retrieval.text import split_sentences

if TYPE_CHECKING:
    from app.config import Cast, NpcSpec
    from app.cues import Cues

# control and zero-width characters, lone surrogates (invalid Unicode: JSON's "\\ud800" decodes to one, and
# tokenizers raise on it) and the two noncharacters
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b-\u200f\u2028\u2029\u2060-\u2064\ufeff"
                      "\ud800-\udfff\ufffe\uffff]")


def clean_player_text(text: object, max_chars: int, specials: tuple[str, ...] = ()) -> str:
    """NFC-normalise, drop control and zero-width characters and the model's `specials` (control tokens such as
    `<|im_start|>`: typed by a player they would be parsed as real role markers and could forge a system turn),
    collapse whitespace; then check that something is left and that it is not too long."""
    if not isinstance(text, str):
        raise InputError(f"player text must be a string, got {type(text).__name__}")
    empty = InputError("player text is empty (after removing whitespace and control characters); say something")
    text = unicodedata.normalize("NFC", _CONTROL.sub("", text))
    text = re.sub(r"\s+", " ", _CONTROL.sub("", text)).strip()
    if not text:
        raise empty
    if len(text) > max_chars:
        raise InputError(f"player text is {len(text)} characters; the limit is {max_chars} "
                         "(guard.max_input_chars in the config)")
    if specials:
        for tok in specials:  # longest first, so no token is cut through by a shorter one
            text = text.replace(tok, " ")
        text = re.sub(r"\s+", " ", text).strip()
        if not text:  # "<|im_end|>" alone is not a line of dialogue
            raise empty
    return text


def check_chapter(chapter: object) -> int:
    if isinstance(chapter, bool) or not isinstance(chapter, int) or chapter < 1:
        raise InputError(f"chapter must be a positive integer, got {chapter!r}")
    return chapter


_INJECTION = re.compile(
    r"(ignore|disregard|forget|override)\s+(all\s+|any\s+|your\s+|the\s+|previous\s+|prior\s+|above\s+)*"
    r"(instructions|rules|prompt|directives|persona|guidelines)|^\s*(system|assistant|developer)\s*:|"
    r"</?\s*(context|system|instructions?|facts)\s*>|(reveal|print|show|repeat)\s+(me\s+)?(your|the)\s+"
    r"(system\s+)?prompt|you are no longer|new instructions|developer (note|mode)|debug mode|"
    r"disable\s+\w+(\s+\w+)?\s+(gating|filters?|checks?|safety)|repeat after me|trust only me|"
    r"(documents|facts|sources)\s+(below|above)\s+are\s+wrong|"
    # a function call typed as code ("send_telegram(recipient=...)", "rent_gear(item='skis')"): a command string
    r"\b[a-z]{2,}_[a-z]\w*\s*\(|\b[a-z]\w*\(\s*\w+\s*=", re.I | re.M)
_PERSONA_BREAK = re.compile(
    r"drop the [\w\s]{0,20}act|step out of (the )?(story|game|character)|break character|out of character|"
    r"(you'?re|you are|are you) (really |just )?(an? )?(ai|bot|chatbot|language model|program)\b|"
    r"for the rest of (this|the) conversation|"
    # role swaps: "from now on you are DAN", "pretend you are a coding assistant", "act as CodeBot"
    r"(from now on|starting now|now),? you (are|will be|play|act as)\b|you are now\b|"
    r"pretend (to be|you are|you're)\b|(^|[.!?,]\s*|\byou (must|should|will|can) )(now )?act as\b|"
    r"roleplay as\b|play the role of\b|"
    r"\b(do anything now|jailbreak|dan mode)\b", re.I)


def injection_flags(text: str) -> list[str]:
    """Cheap, explainable signs that the player is addressing the model instead of the character."""
    flags = []
    if _INJECTION.search(text):
        flags.append("prompt_injection")
    if _PERSONA_BREAK.search(text):
        flags.append("persona_break")
    return flags


_SESSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_session(session: object) -> str:
    if not isinstance(session, str) or not _SESSION.match(session) or ".." in session:
        raise InputError(f"session id {session!r} is invalid; use 1-64 letters, digits, '_', '-' or '.'")
    return session


def check_turn(cast: Cast, max_chars: int, npc: str, text: object, chapter: object, session: object,
               specials: tuple[str, ...] = ()) -> tuple[NpcSpec, str, int, str]:
    """Validate one turn before any work is done: (NPC spec, cleaned text, chapter, session) or a typed error."""
    return (cast.get(npc), clean_player_text(text, max_chars, specials), check_chapter(chapter),
            check_session(session))


# "I'm DAN", "my name is CodeBot": a reply claiming a name (capitalised) that is not the character's
_IDENTITY = re.compile(r"\b(my name is|call me|I am now|I'm now|you may call me)\s+([A-Z][\w-]{2,})")
_LEAK_WORDS = 12
_LETTER = re.compile(r"[^\W\d_]")


def leaks(system: str, reply: str) -> bool:
    """Does the reply recite the system prompt: a run of 12 consecutive words of it, verbatim?"""
    words = re.findall(r"\w+", system.lower())
    if len(words) < _LEAK_WORDS:
        return False
    grams = {" ".join(words[i:i + _LEAK_WORDS]) for i in range(len(words) - _LEAK_WORDS + 1)}
    said = re.findall(r"\w+", reply.lower())
    return any(" ".join(said[i:i + _LEAK_WORDS]) in grams for i in range(len(said) - _LEAK_WORDS + 1))


def output_flag(spec: NpcSpec, world_name: str, cues: Cues, system: str, reply: str) -> str | None:
    """The output guard: why a generated reply must not be said (it speaks as a model, takes another identity than
    the character's, or recites `system`, its instructions), or None. A flagged reply becomes the deflection."""
    if cues.find("fourth_wall", reply):
        return "output_fourth_wall"
    claim = _IDENTITY.search(reply)
    if claim and claim.group(2).lower() not in spec.name.lower() and claim.group(2).lower() not in \
            {w.lower() for w in (spec.role, world_name)}:
        return "output_identity"
    if leaks(system, reply):
        return "output_prompt_leak"
    return None


class SentenceGate:
    """Streams a generated reply sentence by sentence, each checked (with what came before) by `check`, which
    returns a flag when the text so far must not be said. The first failing sentence ends the reply there; a reply
    failing at its first sentence becomes the deflection. The text streamed always equals the final text."""

    _END = re.compile(r"[.!?…][\"'»”)\]]*\s")

    def __init__(self, check, *, max_sentences: int | None = None, markers: tuple[str, ...] = (),
                 closes: tuple[str, ...] = (), invents=None):
        """`max_sentences`: the reply is complete after this many sentences (the character's `markers` not
        counted, nor a list number such as "1."); it is also complete once it ends with one of `closes` (the
        closing marker). A reply held to `max_sentences` still ends with the closing marker: the character says it
        after the last sentence kept, as the model would have done. `invents(sentence)`: the names and numbers a
        sentence brings that the character was never given; the reply is complete before the first sentence after
        the first that invents one (no flag: nothing unsafe was said, only something made up), closed as above."""
        self.check, self.said, self.buffer, self.failed, self.flag = check, "", "", False, None
        self.max_sentences, self.markers, self.closes = max_sentences, {m.strip() for m in markers}, closes
        self.invents = invents
        self.complete: str | None = None  # why the reply is complete before the model stopped
        self.invented: list[str] = []  # what the sentence cut for inventing named

    def _content(self, sentence: str) -> bool:
        return sentence not in self.markers and bool(_LETTER.search(sentence))

    def _invented_at(self, text: str, start: int = 0) -> int | None:
        """Where in `text` the first sentence that invents begins, past its first sentence of content; None.
        Sentences that begin before `start` were checked when they were said and are only counted."""
        if self.invents is None:
            return None
        pos, seen = 0, 0
        for sentence in split_sentences(text):
            at = text.find(sentence, pos)
            if at < 0:
                return None
            pos = at + len(sentence)
            if not self._content(sentence):
                continue
            if seen and at >= start:
                made = self.invents(sentence)
                if made:
                    self.invented = list(made)
                    return at
            seen += 1
        return None

    def feed(self, piece: str) -> list[str]:
        if self.failed or self.complete == "invented":
            return []
        self.buffer += piece
        # a sentence end only after some letters: a list number ("1. ") waits for the words of its item
        cut, start = 0, 0
        for m in self._END.finditer(self.buffer):
            if _LETTER.search(self.buffer[start:m.end()]):
                cut = start = m.end()
        if not cut:
            return []
        chunk, self.buffer = self.buffer[:cut], self.buffer[cut:]
        if not self.said:
            chunk = chunk.lstrip()
        flag = self.check(self.said + chunk)
        if flag:
            self.failed, self.flag = True, flag
            return []
        at = self._invented_at(self.said + chunk, len(self.said))
        if at is not None:
            chunk, self.buffer, self.complete = (self.said + chunk)[len(self.said):at], "", "invented"
            self.said += chunk
            return [chunk] if chunk else []
        self.said += chunk
        said = self.said.strip()
        if self.closes and said.endswith(self.closes):
            self.complete = "closing_marker"
        elif self.max_sentences and len([x for x in split_sentences(said) if x not in self.markers
                                         and _LETTER.search(x)]) >= self.max_sentences:
            self.complete = "max_sentences"
        return [chunk]

    def _closed(self) -> str:
        """What was said with the closing marker after it ("" when there is none, or the check refuses it)."""
        if not self.closes or not self.said.strip() or self.said.strip().endswith(self.closes):
            return ""
        closed = (self.said if self.said[-1:].isspace() else self.said + " ") + self.closes[0].strip()
        return "" if self.check(closed) else closed

    def finish(self, final: str | None, deflection: str) -> tuple[str, str | None, str]:
        """(final text, flag, the last piece to stream). `final` is the backend's cleaned whole reply, or None
        when generation was stopped."""
        said = self.said.strip()
        if not self.failed and final is not None and self.complete != "invented":
            at = self._invented_at(final, len(said))
            if at is not None:  # the model's own end came with an invented sentence
                final, self.complete = final[:at].rstrip(), "invented"
            if final.startswith(said):
                rest = final[len(said):]
                flag = self.check(final) if rest.strip() else None
                if not flag:
                    out = final[len(self.said):] if final.startswith(self.said) else final[len(said):].lstrip()
                    if self.complete != "invented":
                        return final, None, out
                    self.said = (self.said if final.startswith(self.said) else said + " ") + out
                    said = self.said.strip()
                    closed = self._closed()
                    return (closed.strip(), None, out + closed[len(self.said):]) if closed else (said, None, out)
                self.flag = flag
            elif not self.check(final):
                return final, None, ""
        if said and self.complete in ("max_sentences", "invented") and self.closes and not self.failed:
            closed = self._closed()
            if closed:
                return closed.strip(), None, closed[len(self.said):]
        if said:
            return said, self.flag, ""
        return deflection, self.flag, deflection
