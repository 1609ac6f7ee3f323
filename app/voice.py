"""Voice markers derived from a character's style text, for a cast that declares none.

A team's first cast file has persona and style text, not `markers:`. Style text usually says how a character
opens and closes ('Every reply begins with "Right, listen." and ends with "Torque it and trust it."'), so those
quoted phrases become its markers: extracted fact replies are said inside them, free replies stop at the closing
one, and the voice metrics look for them. A cast entry's own `markers:` always wins (`markers: {}` turns them off).
The phrasing rules are English style-guide phrasing, not any world's words.
"""

from __future__ import annotations

import re

from app.config import Cast, Markers, NpcSpec

_Q = r"[\"“«]([^\"”»\n]{2,80})[\"”»]"
_OPENS = re.compile(rf"\b(?:begins?|begin|starts?|opens?|greets?[\w ]{{0,20}}?)\b[^\"“«.;]{{0,40}}?\b(?:with|by)\b"
                    rf"[^\"“«.;]{{0,30}}?{_Q}", re.IGNORECASE)
_CLOSES = re.compile(rf"\b(?:ends?|closes?|finish(?:es)?|signs? off)\b[^\"“«.;]{{0,40}}?\b(?:with|by)\b"
                     rf"[^\"“«.;]{{0,30}}?{_Q}", re.IGNORECASE)
_OR = re.compile(rf"^\s*(?:or|and)\s+{_Q}", re.IGNORECASE)


def _phrases(pattern: re.Pattern, text: str) -> list[str]:
    out = []
    for m in pattern.finditer(text):
        out.append(m.group(1).strip())
        rest = text[m.end():]
        while (alt := _OR.match(rest)) is not None:  # 'starts with "Halt." or "At ease."'
            out.append(alt.group(1).strip())
            rest = rest[alt.end():]
    return list(dict.fromkeys(p for p in out if p))


def derive_markers(style: str) -> Markers | None:
    """The opening and closing phrases the style text quotes, or None when it quotes none."""
    opens, closes = _phrases(_OPENS, style), _phrases(_CLOSES, style)
    return Markers(opens=opens, closes=closes) if opens or closes else None


def with_derived_markers(cast: Cast) -> Cast:
    """The cast with derived markers for every character that declares no `markers:` of its own."""
    def fill(npc: NpcSpec) -> NpcSpec:
        if npc.markers is not None:
            return npc
        derived = derive_markers(npc.style)
        return npc if derived is None else npc.model_copy(update={"markers": derived})

    return cast.model_copy(update={"npcs": [fill(n) for n in cast.npcs]})
