"""The router: per player utterance, decide `fact` | `style` | `both` | `offworld` | `action`, and say why.

RAG for facts, fine-tuning for form. A calibrated logistic regression over
  - the utterance's sentence embedding (the index's embedder, so no extra model),
  - how close it is to any lore chunk: the best cosine among the hits of an unfiltered search by the engine's own
    retriever (`lore_hits`; the same search in training, in a turn and in `eval router`),
  - surface cues from data files (question words, form requests, greetings, role-played actions, out-of-world
    vocabulary, addressing the AI; see app/cues.py),
trained on utterances synthesised from the world's own lore and cast (app/router_data.py), the examples of the
cast's declared actions (`action`; a world without actions never routes there), plus any labelled seeds the world
ships. A new world gets a router without hand labels. Two rules follow the fit: `offworld` takes a majority or a
cue (`router.offworld_min`), and small talk asks no typed question (a `style` line that opens a clause with "who",
"how many", ... and has no `personal` cue is a `fact`). The trained weights are cached by the hash of
everything that made them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.cues import Cues
from retrieval.errors import CorpusError
from retrieval.fileio import atomic_write_bytes, read_jsonl

LABELS = ("fact", "style", "both", "offworld", "action")
OPTIONAL = ("action",)  # labels a world may have no utterances for (a cast without actions)
CUES = ("fact", "form", "social", "personal", "action", "self", "offworld")
UNREAD = ("request", "inform", "narration")  # cue lists only the action detector reads (app/action_detect.py)


@dataclass(frozen=True)
class Route:
    label: str
    reason: str
    signals: dict = field(default_factory=dict)


def load_router_items(path: Path) -> list[dict]:
    """Labelled utterances ({"text", "label", ...}): a world's seeds or its router eval set."""
    items = []
    for n, obj in read_jsonl(path, ("text", "label")):
        if obj["label"] not in LABELS:
            raise CorpusError(f"{path}:{n}: label {obj['label']!r} is not one of {', '.join(LABELS)}")
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            raise CorpusError(f"{path}:{n}: text must be a non-empty string")
        items.append(obj)
    if not items:
        raise CorpusError(f"{path}: no labelled utterances")
    return items


def load_seeds(path: Path) -> list[tuple[str, str]]:
    return [(it["text"], it["label"]) for it in load_router_items(path)]


def offworld_allowed(p_offworld: float, cues: dict, offworld_min: float) -> bool:
    """May a line be `offworld`: the router gives that label at least `offworld_min`, or a `self`/`offworld` cue
    fired (the rule for the router's own choice and for any fallback among its labels)."""
    return p_offworld >= offworld_min or bool(cues.get("self") or cues.get("offworld"))


def lore_match(hits) -> float:
    """The lore-match feature from an unfiltered search's hits: their best (dense cosine) score."""
    return max((h.score for h in hits), default=0.0)


def _describe(obj) -> object:
    """A retriever's settings as plain data (part of the router's cache key): its own fields, a reranker's too; a
    set as its sorted members; a model or other third-party object by its type (what chose it, a path or a name, is a
    field of the retriever that holds it)."""
    if obj is None or isinstance(obj, (int, float, str, bool)):
        return obj
    if isinstance(obj, (set, frozenset)):
        return sorted(map(str, obj))
    if isinstance(obj, (list, tuple)):
        return [_describe(v) for v in obj]
    if not type(obj).__module__.startswith("retrieval."):
        return type(obj).__name__
    fields = {k: _describe(v) for k, v in sorted(vars(obj).items()) if not k.startswith("_") and k != "embedder"}
    return [type(obj).__name__, fields]


class Router:
    """Learned, calibrated router. `lore_threshold` centres the lore-match feature."""

    def __init__(self, embedder, cues: Cues, examples: list[tuple[str, str]], lore, *,
                 lore_threshold: float = 0.45, cache_dir: Path | None = None, c: float = 1.0,
                 retriever=None, k: int = 1, offworld_min: float = 0.0):
        """`lore`: the LoreIndex searched for the lore-match feature, by `retriever` (its top `k`; None: the dense
        top 1), in training as the engine does in a turn. `offworld_min`: the least probability of `offworld` that
        routes there (below it, the next most likely label; applied after the fit, so not part of the cache key)."""
        self.embedder, self.cues, self.lore_threshold = embedder, cues, lore_threshold
        self.offworld_min = offworld_min
        self.retriever, self.k = retriever, k
        if not examples:
            raise CorpusError("the router has no training utterances (no seeds and nothing to synthesise)")
        missing = [lbl for lbl in LABELS if lbl not in {lbl for _, lbl in examples} and lbl not in OPTIONAL]
        if missing:
            raise CorpusError(f"the router's training utterances lack the label(s) {', '.join(missing)}; add seeds "
                              "or lore/cues the synthesiser can use (see docs/worlds.md, 'The router')")
        search = [] if retriever is None else [_describe(retriever), k]  # the dense top 1 keeps its old key
        read = {k: v for k, v in cues.phrases.items() if k not in UNREAD}  # the key changes when what it reads does
        key = hashlib.sha256(json.dumps([embedder.fingerprint, lore_threshold, c, list(CUES), list(LABELS), read,
                                         examples, lore.manifest.get("corpus", {}).get("hash"), *search]).encode()
                             ).hexdigest()
        key = key[:16]
        self.key = key
        cached = Path(cache_dir) / f"router-{key}.npz" if cache_dir is not None else None
        if cached is not None and cached.is_file():
            z = np.load(cached)
            self.coef, self.intercept = z["coef"], z["intercept"]
        else:
            self.coef, self.intercept = self._fit(examples, lore, c)
            if cached is not None:
                import io

                buf = io.BytesIO()
                np.savez(buf, coef=self.coef, intercept=self.intercept)
                cached.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(cached, buf.getvalue())
        self.n_examples = len(examples)

    def lore_hits(self, index, text: str, qvec: np.ndarray) -> list:
        """The unfiltered search whose best score is the lore-match feature (`lore_match`)."""
        if self.retriever is None:
            return index.search_vector(qvec, self.k)
        return self.retriever.search(index, text, qvec, self.k)

    def _cue_hits(self, text: str) -> dict[str, str | None]:
        return {c: self.cues.find(c, text) for c in CUES}

    def features(self, text: str, qvec: np.ndarray, lore_score: float,
                 cues: dict[str, str | None] | None = None) -> np.ndarray:
        cues = self._cue_hits(text) if cues is None else cues
        lore = float(np.clip((lore_score - self.lore_threshold) / 0.15, -1.0, 1.0))
        extra = [lore, lore_score] + [1.0 if cues[c] else 0.0 for c in CUES]
        return np.concatenate([qvec.astype(np.float64), np.array(extra)])  # (dim + 2 + len(CUES),)

    def _fit(self, examples, lore, c):
        from sklearn.linear_model import LogisticRegression

        vecs = self.embedder.encode([t for t, _ in examples])  # (N, dim)
        lore_scores = [lore_match(self.lore_hits(lore, t, v)) for (t, _), v in zip(examples, vecs)]
        x = np.stack([self.features(t, v, s) for (t, _), v, s in zip(examples, vecs, lore_scores)])
        y = np.array([LABELS.index(lbl) for _, lbl in examples])
        clf = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
        clf.fit(x, y)
        coef = np.zeros((len(LABELS), x.shape[1]))
        intercept = np.full(len(LABELS), -50.0)  # a label without utterances is never chosen
        coef[clf.classes_] = clf.coef_
        intercept[clf.classes_] = clf.intercept_
        return coef, intercept

    def probabilities(self, text: str, qvec: np.ndarray, lore_score: float,
                      cues: dict[str, str | None] | None = None) -> np.ndarray:
        z = self.coef @ self.features(text, qvec, lore_score, cues) + self.intercept  # (4,)
        z = np.exp(z - z.max())
        return z / z.sum()

    def route(self, text: str, qvec: np.ndarray, lore_score: float) -> Route:
        cues = self._cue_hits(text)
        p = self.probabilities(text, qvec, lore_score, cues)
        best = int(np.argmax(p))
        doubt = ""
        if LABELS[best] == "offworld" and not offworld_allowed(p[best], cues, self.offworld_min):
            # an in-world line that none of the world's labels fits well ("What's your cat called?") is not out of
            # the world: that takes a majority, or a cue that names the machine or the world outside ("are you
            # chatgpt"); else the next most likely label
            doubt = f"offworld {p[best]:.2f} < {self.offworld_min:g}, so "
            best = max((i for i in range(len(LABELS)) if LABELS[i] != "offworld"), key=lambda i: p[i])
        if LABELS[best] == "style" and not cues.get("personal") and (asks := self.cues.answer_type(text, opens=True)):
            # small talk does not ask who, when, where or how many ("hey, who was your captain?"); a question about
            # the character's own tastes or life (a `personal` cue: "who's your favourite ...") still is small talk
            doubt += f"style {p[best]:.2f}, but it asks a {asks}, so "
            best = LABELS.index("fact")
        label = LABELS[best]
        probs = dict(zip(LABELS, p.round(3).tolist()))
        said = [f"{c} '{m}'" for c, m in cues.items() if m and not (c == "fact" and m == "?")]
        reason = f"{doubt}{label} {p[best]:.2f} (lore match {lore_score:.2f}" + (
            f"; cues: {', '.join(said)}" if said else "") + ")"
        return Route(label, reason, {"probabilities": probs, "lore_score": round(lore_score, 3),
                                     "cues": {c: m for c, m in cues.items() if m}})
