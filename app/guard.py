"""Player-input guard: normalises text and rejects what cannot be served, with a typed error saying why."""

from __future__ import annotations

import re
import unicodedata

from retrieval.errors import InputError

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
    r"(documents|facts|sources)\s+(below|above)\s+are\s+wrong", re.I | re.M)
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
