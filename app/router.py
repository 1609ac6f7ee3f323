"""The router: per player utterance, decide `fact` | `style` | `both` | `offworld`, and say why.

RAG for facts, fine-tuning for form. The decision combines three explainable signals:
  1. the nearest labelled seed utterances (cosine kNN over `corpora/router/seeds.jsonl`, same embedder as the index);
  2. how close the utterance is to any lore chunk (top cosine of an unfiltered search);
  3. surface cues: question words, explicit form requests ("in rhyme", "in three words"), greetings and
     role-played actions ("I open the door"), and out-of-world vocabulary (phones, code, homework...).
Then: offworld if the out-of-world evidence wins; otherwise, if the utterance needs facts it is `both` when it
also asks for a form, else `fact`; everything else is `style` (voice only, no retrieval).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval.embeddings import Embedder
from retrieval.errors import CorpusError
from retrieval.fileio import read_jsonl

LABELS = ("fact", "style", "both", "offworld")

_OFFWORLD = re.compile(
    r"\b(i-?phones?|android|smartphones?|internet|wi-?fi|bitcoin|crypto\w*|python|javascript|java|html|sql|code|coding|"
    r"programming|software|compiler|chatgpt|openai|gpt-?\d*|llms?|language model|neural|algorithm|app|apps|"
    r"president|election|senate|covid|vaccine|tiktok|instagram|netflix|youtube|google|twitter|facebook|reddit|"
    r"amazon|spotify|uber|email|e-mail|computer|laptop|video ?games?|marvel|star wars|pok[eé]mon|minecraft|"
    r"fortnite|harry potter|hogwarts|homework|stock market|stocks|nba|nfl|premier league|world cup|"
    r"climate change|nasa|ukraine|taylor swift|elon musk|2024|2025|2026|recipe for|lasagna|pizza delivery|"
    r"sql|api|linux|windows 1\d|excel|spreadsheet|tesla|airplane|television|tv show|weather|forecast|news|"
    r"essay|school|university exam|translate|translation|solve|equation|math|calculus|in real life|real world|"
    r"elden ring|boss fight|context window|tokens?|dataset|store my (data|conversations)|time zone|"
    r"what time is it|wikipedia)\b|\b\d+\s*[a-z]\s*[-+*/=]\s*\d+", re.I)
_SELF = re.compile(r"\b(are you (an? )?(ai|bot|robot|real|human|language model|chatbot)|who (made|trained|created) "
                   r"you|your (system )?prompt|what model are you)\b", re.I)
_FORM = re.compile(
    r"\b(rhym\w*|poem|poetry|verse|haiku|limerick|sonnet|song|sing|ballad|riddle|like a (pirate|child|poet|"
    r"soldier|bard|villain|king|queen|ghost)|as a (pirate|bard|poet)|in (one|two|three|four|five|six|seven|"
    r"ten|\d+) words?|one word|one sentence|a sentence|briefly|short version|sum (it |this |that )?up|summari[sz]e|"
    r"grump\w*|angr\w*|dramatic\w*|whisper\w*|shout\w*|sarcastic\w*|spooky|scary|funny|jok\w*|cheerful\w*|"
    r"solemn\w*|tell it|say it|in your (own )?(words|voice|style)|as a story|like a story|bedtime|gossip|"
    r"list|bullet|numbered|step by step|in spanish|en español|pretend|like a|like an|like it'?s|in the style of|"
    r"as a (tweet|poem|song|story|letter|poster|headline|riddle|list|rap)|\w+ speak|speak like|"
    r"\w+ words? max|max(imum)? \w+ words|"
    r"poster|headline|nickname|commentator|fairy ?tale|en (una|dos|tres) (frase|palabras?)|en verso|"
    r"dramatically|mysteriously|in character)\b", re.I)
_FACT = re.compile(
    r"(\b(who|what|when|where|which|whose|why|how (many|much|old|long|far|tall|deep|high|big|do|does|did|is|are|"
    r"was|were|can)|what year|in what|name of|tell me about|explain|describe|is there|are there|do you know|"
    r"quién|qué|dónde|cuándo|cuántos?|cuántas?)\b|\?)", re.I)
_SOCIAL = re.compile(
    r"^\s*(hi|hello|hey|hiya|howdy|greetings|good (morning|evening|night|day)|hola|buen[oa]s|thanks|thank you|"
    r"thx|gracias|bye|goodbye|farewell|adi[oó]s|see you|sorry|ugh|lol|haha|wow|ok|okay|yes|no|nice)\b", re.I)

_ACTION = re.compile(
    r"^\s*\*?\s*I\s+(walk|push|pull|open|close|look|step|sit|stand|take|pick|put|run|turn|knock|wait|enter|leave|"
    r"climb|follow|read|light|blow|bow|nod|smile|sigh|shrug|wave|kneel|listen|sneak|hide|lean|touch|drop|hand|"
    r"give|raise|lower|head|go|move|cross)\w*\b", re.I)


@dataclass(frozen=True)
class Route:
    label: str
    reason: str
    signals: dict = field(default_factory=dict)


def load_seeds(path: Path) -> list[tuple[str, str]]:
    seeds = []
    for n, obj in read_jsonl(path, ("text", "label")):
        if obj["label"] not in LABELS:
            raise CorpusError(f"{path}:{n}: label {obj['label']!r} is not one of {', '.join(LABELS)}")
        seeds.append((str(obj["text"]), obj["label"]))
    if not seeds:
        raise CorpusError(f"{path}: no router seeds")
    return seeds


class Router:
    def __init__(self, embedder: Embedder, seeds: list[tuple[str, str]], *, neighbours: int = 7,
                 lore_threshold: float = 0.45):
        self.embedder = embedder
        self.seed_texts = [t for t, _ in seeds]
        self.seed_labels = np.array([LABELS.index(label) for _, label in seeds])  # (S,)
        self.seed_vecs = embedder.encode(self.seed_texts)  # (S, dim)
        self.k = min(neighbours, len(seeds))
        self.lore_threshold = lore_threshold

    def _knn(self, qvec: np.ndarray) -> np.ndarray:
        sims = self.seed_vecs @ qvec  # (S,)
        top = np.argsort(-sims)[: self.k]
        votes = np.zeros(len(LABELS))
        for i in top:
            votes[self.seed_labels[i]] += max(float(sims[i]), 0.0) + 1e-6
        return votes / votes.sum()  # (4,) probabilities

    def route(self, text: str, qvec: np.ndarray, lore_score: float) -> Route:
        p = self._knn(qvec)
        knn = dict(zip(LABELS, p.round(3).tolist()))
        off_cue = _OFFWORLD.search(text) or _SELF.search(text)
        form_cue = _FORM.search(text)
        fact_cue = _FACT.search(text)
        social_cue = _SOCIAL.search(text)
        action_cue = _ACTION.search(text)  # "I open the door": role-play the scene, no facts asked
        lore_term = float(np.clip((lore_score - self.lore_threshold) / 0.15, -1.0, 1.0))
        signals = {"knn": knn, "lore_score": round(lore_score, 3), "off_cue": bool(off_cue),
                   "form_cue": form_cue.group(0) if form_cue else None, "fact_cue": bool(fact_cue),
                   "social_cue": bool(social_cue), "action_cue": bool(action_cue)}

        offworld = p[3] + (0.6 if off_cue else 0.0) - 0.3 * max(lore_term, 0.0)
        needs_fact = p[0] + p[2] + 0.4 * lore_term + (0.15 if fact_cue else -0.1) - (0.2 if social_cue else 0.0) \
            - (0.5 if action_cue and not fact_cue else 0.0)
        # a form is wanted when the player says so; the seeds alone decide only when they clearly say `both`
        wants_form = bool(form_cue) or p[2] >= 0.6

        if offworld > 0.55 and offworld > needs_fact:
            why = "out-of-world wording" if off_cue else f"nearest seeds are offworld ({knn['offworld']:.2f})"
            return Route("offworld", f"{why}; lore match only {lore_score:.2f}", signals)
        if needs_fact > 0.5:
            basis = f"asks about the world (lore match {lore_score:.2f}, seeds fact+both {p[0] + p[2]:.2f})"
            if wants_form:
                cue = f"asks for a form ('{form_cue.group(0)}')" if form_cue else "seeds say both"
                return Route("both", f"{basis} and {cue}", signals)
            return Route("fact", basis, signals)
        why = ("role-played action" if action_cue else "social/voice request" if social_cue or form_cue
               else f"no facts needed (seeds style {p[1]:.2f})")
        return Route("style", f"{why}; lore match {lore_score:.2f}", signals)
