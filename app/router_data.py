"""Training utterances for the router, synthesised from the world's own lore and cast (no hand labels needed).

Templates (app/data/router_templates.yaml) are filled with the world's document titles, proper names found in its
lore, its characters' names and its out-of-world cue phrases; a world's labelled seeds, if any, are added as is.
Deterministic: the same world gives the same utterances.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import yaml

from app.cues import Cues

TEMPLATES = Path(__file__).with_name("data") / "router_templates.yaml"
_NAME = re.compile(r"(?<![.!?]\s)(?<!^)\b([A-ZÁÉÍÓÚÑ][\w’'-]+(?:\s+(?:de|del|la|las|los|of|the|van|von|y)?\s*"
                   r"[A-ZÁÉÍÓÚÑ][\w’'-]+){0,3})")
_PLAIN = re.compile(r"^[\w\s'-]+$")


def lore_entities(docs: list[tuple[str, str]], limit: int = 80) -> list[str]:
    """Proper names that recur in the lore (multi-word first), most frequent first. `docs`: (title, text) pairs."""
    counts: Counter[str] = Counter()
    for _, body in docs:
        for m in _NAME.finditer(body):
            name = m.group(1).strip()
            if len(name) > 3 and not name.isupper():
                counts[name] += 1
    ranked = sorted(counts, key=lambda n: (-(counts[n] + 2 * (" " in n)), n))
    return ranked[:limit]


def synthesise(docs: list[tuple[str, str]], npc_names: list[str], cues: Cues, seed: int = 0,
               per_label: int = 160) -> list[tuple[str, str]]:
    tpl = yaml.safe_load(TEMPLATES.read_text(encoding="utf-8"))
    rng = random.Random(seed)
    titles = sorted({title for title, _ in docs})
    entities = lore_entities(docs) or titles
    offworld = [p for p in cues.phrases["offworld"] if _PLAIN.match(p)]
    forms = tpl["forms"]

    def fill(t: str) -> str:
        return t.format(title=rng.choice(titles), entity=rng.choice(entities), npc=rng.choice(npc_names),
                        form=rng.choice(forms), offworld=rng.choice(offworld) if offworld else "the internet")

    out: list[tuple[str, str]] = []
    for label in ("fact", "both", "style"):
        out += [(fill(rng.choice(tpl[label])), label) for _ in range(per_label)]
    fixed = [(t, "offworld") for t in tpl["offworld_fixed"]]
    n_open = per_label - len(fixed)
    out += fixed + ([(fill(rng.choice(tpl["offworld"])), "offworld") for _ in range(n_open)] if offworld else [])
    return list(dict.fromkeys(out))
