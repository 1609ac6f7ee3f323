"""Answer readers: which evidence sentence holds the answer to a question. The seam is `AnswerReader`; the one
model is the cross-encoder `eterna train reader` builds (tuning/reader.py), shipped as `adapters/reader`
(`builtin:answer-reader`) and, trained with `--context`, as `adapters/reader-context`
(`builtin:answer-reader-context`). `grounding.reader` names one reader, or a list whose mean logit is the score
(`MeanReader`: two readers that err on different questions).

    reader = load_reader(cfg.grounding.reader)     # cached per folder (or list of folders)
    reader.scores("Who built the tower?", [("Towers", "The tower was built in 1620."), ...])   # one logit each
"""

from __future__ import annotations

import functools
import json
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

from retrieval.errors import ModelNotFoundError

_ADAPTERS = Path(__file__).resolve().parents[1] / "adapters"
BUILTIN_READERS = {"builtin:answer-reader": _ADAPTERS / "reader",
                   "builtin:answer-reader-context": _ADAPTERS / "reader-context"}


class AnswerReader(Protocol):
    id: str

    def scores(self, question: str, candidates: list[tuple[str, str]]) -> list[float]:
        """One score per candidate (its section title, the sentence); higher holds the answer more likely."""
        ...


def resolve_reader(spec: str | Path) -> Path:
    from tuning.adapters import ADAPTER_MANIFEST

    path = BUILTIN_READERS.get(str(spec), Path(spec).expanduser())
    if not (path / "adapter_config.json").is_file() or not (path / ADAPTER_MANIFEST).is_file():
        raise ModelNotFoundError(f"answer reader {str(spec)!r}: no reader folder at {path} (build one with "
                                 f"`eterna train reader`, or use {', '.join(BUILTIN_READERS)})")
    return path


class CrossEncoderReader:
    """The LoRA cross-encoder over the embedder's MiniLM, merged into the base at load. The base is the manifest's
    `base.spec` (an embedder spec, e.g. builtin:all-minilm-l6-v2), found on this machine by the embedder's rules."""

    def __init__(self, folder: Path, max_length: int = 128):
        import torch
        from peft import PeftModel
        from transformers import AutoTokenizer

        from retrieval.embeddings import resolve_embedder
        from tuning.adapters import ADAPTER_MANIFEST
        from tuning.base import model_fingerprint
        from tuning.reader import load_model

        manifest = json.loads((folder / ADAPTER_MANIFEST).read_text(encoding="utf-8"))
        base = resolve_embedder(manifest["base"]["spec"])
        want = manifest["base"].get("fingerprint")
        if want and isinstance(base, Path) and model_fingerprint(base) != want:
            raise ModelNotFoundError(f"answer reader {folder}: trained on another copy of {manifest['base']['spec']} "
                                     f"(fingerprint {want}, here {model_fingerprint(base)}); retrain it with "
                                     "`eterna train reader` (make reader)")
        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))
        self.tok = AutoTokenizer.from_pretrained(str(folder))
        self.model = PeftModel.from_pretrained(load_model(base), str(folder)).merge_and_unload().eval()
        recipe = manifest.get("recipe", {})
        self.max_length = recipe.get("max_length", max_length)
        self.titles = recipe.get("titles", False)
        self.context = recipe.get("context", False)
        self.id = f"reader:{folder.name}"
        self._lock = threading.Lock()  # one forward at a time: the model is shared by the engine's threads
        self._last: OrderedDict[tuple, list[float]] = OrderedDict()  # a turn's checks read the same candidates

    def scores(self, question: str, candidates: list[tuple]) -> list[float]:
        import torch

        from tuning.reader import candidate_texts, score_pairs

        if not candidates:
            return []
        texts = candidate_texts(candidates, self.titles, self.context)
        key = (question, tuple(texts))
        with self._lock:
            if key in self._last:
                self._last.move_to_end(key)
                return list(self._last[key])
            with torch.inference_mode():
                out = [float(x) for x in score_pairs(self.model, self.tok, question, texts, self.max_length)]
            self._last[key] = out
            while len(self._last) > 64:
                self._last.popitem(last=False)
            return list(out)


class MeanReader:
    """Several readers as one: each candidate's score is the mean of their logits. Readers trained on other rows or
    with other inputs (one reads the sentence before each candidate) miss different answers."""

    def __init__(self, readers: list[AnswerReader]):
        if not readers:
            raise ValueError("MeanReader needs at least one reader")
        self.readers = readers
        self.id = "mean(" + ",".join(r.id for r in readers) + ")"

    def scores(self, question: str, candidates: list[tuple]) -> list[float]:
        each = [r.scores(question, candidates) for r in self.readers]
        return [sum(s) / len(s) for s in zip(*each)]


@functools.lru_cache(maxsize=8)
def _one_reader(spec: str) -> CrossEncoderReader:
    return CrossEncoderReader(resolve_reader(spec))


def load_reader(spec: str | tuple[str, ...] | list[str]) -> AnswerReader:
    """The reader `grounding.reader` names: one spec, or several whose mean logit scores (each loaded once)."""
    if isinstance(spec, (str, Path)):
        return _one_reader(str(spec))
    specs = [str(s) for s in spec]
    return _one_reader(specs[0]) if len(specs) == 1 else _mean_reader(tuple(specs))


@functools.lru_cache(maxsize=4)
def _mean_reader(specs: tuple[str, ...]) -> MeanReader:
    return MeanReader([_one_reader(s) for s in specs])
