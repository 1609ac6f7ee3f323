"""The A/B evaluation harness: the same items through every engine variant, metrics with paired confidence
intervals, and a report.

    eterna eval ab --config configs/eval/NAME.yaml --out DIR [--limit N] [--resume]

An eval config names a world config, the item sets (the world's fact questions, style prompts, router lines and
adversarial lines, whichever it names), and the variants. A variant is config: adapters on or off, a forced route
(`fact`: always retrieve; `style`: never) or the router, another cast (other adapters) or index, and decoding or
grounding overrides. All variants share one loaded base model and embedder (`DialogueEngine.variant`).

`DIR/answers.jsonl` holds one line per answer (variant, set, item, text, route, sources, timings), appended and
fsynced as it goes, so `--resume` after a crash asks only what is missing. `DIR/summary.json`, `DIR/report.md` and
a self-contained `DIR/report.html` (plots inlined) follow.
"""

from __future__ import annotations

import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from app.backends import check_backend
from app.config import EternaConfig, _read_yaml, _Strict, _validate
from app.evaluation.metrics import BINARY, METRICS
from app.evaluation.stats import holm, mcnemar_exact, mean_ci, paired_diff_ci
from retrieval.errors import ConfigError, EternaError
from retrieval.fileio import read_jsonl

SETS = ("facts", "style", "router", "adversarial")


class VariantSpec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    adapters: bool = Field(True, description="speak through the cast's adapters")
    route: Literal["auto", "fact", "style", "both", "offworld"] = Field(
        "auto", description="auto = the router; fact = always retrieve; style = never")
    npcs: Path | None = Field(None, description="another cast file (other adapters)")
    llm: str | None = Field(None, description="another base model (loaded once, shared by the variants naming it)")
    backend: str | None = Field(None, description="another generation backend (a name in app/backends' registry)")
    index: Path | None = Field(None, description="another index folder")
    persona_adapter: Path | None = Field(None, description="serve this persona-following adapter for the characters "
                                                           "without their own (models.persona_adapter)")
    generation: dict = Field(default_factory=dict, description="overrides of generation.*")
    grounding: dict = Field(default_factory=dict, description="overrides of grounding.*")
    retrieval: dict = Field(default_factory=dict, description="overrides of retrieval.*")

    @field_validator("backend")
    @classmethod
    def _backend(cls, v):
        return v if v is None else check_backend(v, auto=False)


class SetsSpec(_Strict):
    facts: Path | None = None
    style: Path | None = None
    router: Path | None = None
    adversarial: Path | None = None


class EvalConfig(_Strict):
    world: Path = Field(description="the world's config")
    npcs: Path | None = Field(None, description="the cast for every variant unless a variant names its own")
    sets: SetsSpec = SetsSpec()
    only: list[Literal["facts", "style", "router", "adversarial"]] | None = Field(
        None, min_length=1, description="run only these sets (default: every set named or in the world's eval folder)")
    variants: list[VariantSpec] = Field(min_length=2)
    reference: str | None = Field(None, description="variant the others are compared with (default: the last)")
    limit: int | None = Field(None, ge=1, description="items per set at most")
    seed: int = 0
    bootstrap: int = Field(2000, ge=100)
    examples: int = Field(3, ge=0, description="example answers per variant in the report")

    @classmethod
    def load(cls, path: Path) -> EvalConfig:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: eval config not found")
        cfg = _validate(cls, _read_yaml(path), path)
        base = path.parent

        def fix(p):
            return None if p is None else (p if p.is_absolute() else (base / p).resolve())
        names = [v.name for v in cfg.variants]
        if len(set(names)) != len(names):
            raise ConfigError(f"{path}: variant names must be unique, got {names}")
        if cfg.reference is not None and cfg.reference not in names:
            raise ConfigError(f"{path}: reference {cfg.reference!r} is not a variant ({', '.join(names)})")
        return cfg.model_copy(update={
            "world": fix(cfg.world), "npcs": fix(cfg.npcs),
            "sets": SetsSpec(**{k: fix(getattr(cfg.sets, k)) for k in SETS}),
            "variants": [v.model_copy(update={"npcs": fix(v.npcs), "index": fix(v.index),
                                              "persona_adapter": fix(v.persona_adapter)}) for v in cfg.variants]})


def load_items(cfg: EvalConfig, world: EternaConfig, limit: int | None) -> list[dict]:
    """Every item of every named set, with a stable id `set:id`. Sets not named default to the world's eval folder
    when present there."""
    from app.evaluation.facts import load_fact_items

    folder = world.paths.eval
    defaults = {"facts": "facts.jsonl", "style": "style_prompts.jsonl", "router": "router.jsonl",
                "adversarial": "adversarial.jsonl"}
    items: list[dict] = []
    for name in (n for n in SETS if cfg.only is None or n in cfg.only):
        path = getattr(cfg.sets, name) or (folder / defaults[name] if folder is not None else None)
        if path is None or not path.is_file():
            continue
        if name == "facts":
            rows = load_fact_items(path)
            rows = [{**r, "text": r["question"]} for r in rows]
        else:
            need = ("text", "label") if name == "router" else ("npc", "text")
            rows = [{**obj, "line": n} for n, obj in read_jsonl(path, need)]
        rows = rows[: limit] if limit else rows
        for r in rows:
            items.append({**r, "set": name, "key": f"{name}:{r.get('id', r['line'])}", "source": str(path)})
    if not items:
        raise EternaError("no evaluation items: name sets in the eval config or give the world a paths.eval folder")
    return items


@dataclass
class Context:
    """What metrics need beside the answer: cues, voice markers, a voice classifier, support and break checks."""

    cues: object
    markers: dict
    selector: object
    voice: object = None
    personas: tuple = ()  # (npc ids, unit persona vectors (N, dim), embedder)
    phrases: dict = field(default_factory=dict)  # npc id -> signature phrases (app/evaluation/replies.py)
    rouge: object = field(default=None)

    def __post_init__(self):
        from rouge_score import rouge_scorer

        self.rouge = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

    def unsupported(self, text: str, evidence: str) -> list[str]:
        from app.grounding import Evidence

        return self.selector.unsupported(text, [Evidence(evidence, "", "", "", 0.0)], "")

    def breaks(self, text: str, item: dict) -> bool:
        return bool(self.cues.find("fourth_wall", text))

    def closest_persona(self, text: str, npc: str) -> float | None:
        if not self.personas or not text.strip():
            return None
        ids, vecs, embedder = self.personas
        if npc not in ids or len(ids) < 2:
            return None
        v = embedder.encode([text])[0]
        return float(ids[int(np.argmax(vecs @ v))] == npc)

    def sounds_like(self, text: str, npc: str) -> float | None:
        if self.voice is None:
            return None
        return float(self.voice.predict(text) == npc)


class VoiceClassifier:
    """Which character does a reply sound like: logistic regression over sentence embeddings of the cast's style
    sets (their assistant turns)."""

    def __init__(self, embedder, style_dir: Path, npcs: list[str]):
        from sklearn.linear_model import LogisticRegression

        texts, labels = [], []
        for npc in npcs:
            path = style_dir / f"{npc}.jsonl"
            if not path.is_file():
                continue
            for _, obj in read_jsonl(path, ("messages",)):
                for m in obj["messages"]:
                    if m.get("role") == "assistant" and m.get("content"):
                        texts.append(m["content"])
                        labels.append(npc)
        self.ok = len(set(labels)) >= 2
        if self.ok:
            self.embedder = embedder
            self.clf = LogisticRegression(max_iter=2000, C=4.0).fit(embedder.encode(texts), labels)

    def predict(self, text: str) -> str:
        return str(self.clf.predict(self.embedder.encode([text]))[0])


def _engines(cfg: EvalConfig, world: EternaConfig):
    """One engine per variant, all on one loaded model."""
    from app.config import Cast
    from app.assemble import build_backend
    from app.dialogue import DialogueEngine

    first = None
    engines = {}
    generators: dict[tuple, object] = {}
    for v in cfg.variants:
        wcfg = world.model_copy(update={
            "generation": world.generation.model_copy(update=v.generation),
            "grounding": world.grounding.model_copy(update=v.grounding),
            "retrieval": world.retrieval.model_copy(update=v.retrieval),
            "paths": world.paths.model_copy(update={"sessions": None}),
            # without adapters, no persona adapter either; a variant may name its own
            "models": world.models.model_copy(update={"persona_adapter": None if not v.adapters else
                                                      (v.persona_adapter or world.models.persona_adapter)})})
        wcfg.check_persona_adapter(f"variant {v.name}")
        _validate(EternaConfig, json.loads(wcfg.model_dump_json()), Path(f"variant {v.name}"))
        cast_path = v.npcs or cfg.npcs or world.paths.npcs
        # a variant without adapters loads none (so it also runs on a base model the cast's adapters do not fit)
        if first is None:
            first = DialogueEngine.from_settings(wcfg, npcs=cast_path, index=v.index, adapters=v.adapters)
            engines[v.name] = first
        else:
            cast = Cast.load(cast_path, world.world)
            engines[v.name] = first.variant(config=wcfg, cast=cast if v.adapters else cast.without_adapters(),
                                            index_root=v.index)
        if v.llm is not None or (v.backend is not None and v.backend != first.generator.name):
            key = (v.llm or world.models.llm, v.backend or world.models.backend)
            if key not in generators:  # one load per distinct base model and backend
                models = world.models.model_copy(update={"backend": v.backend or world.models.backend})
                generators[key] = build_backend(wcfg.model_copy(update={"models": models}), v.llm)
            engines[v.name] = engines[v.name].variant(generator=generators[key])
    return engines


def read_answers(path: Path) -> dict[tuple[str, str], dict]:
    """(variant, item key) -> answer, from a run's answers.jsonl; a line a crash left torn is passed over."""
    return {(a["variant"], a["key"]): a for _, a in read_jsonl(path, ("variant", "key"), skip_bad=True)}


def run_ab(config_path: Path, out: Path, *, limit: int | None = None, resume: bool = False,
           progress: bool = True) -> dict:
    cfg = EvalConfig.load(config_path)
    world = EternaConfig.load(cfg.world)
    items = load_items(cfg, world, limit or cfg.limit)
    out = Path(out)
    answers_path = out / "answers.jsonl"
    if answers_path.exists() and not resume:
        raise EternaError(f"{answers_path} exists; pass --resume to finish that run, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    done: dict[tuple[str, str], dict] = {}
    if answers_path.exists():  # a torn last line from a crash is passed over: asked again
        done.update(read_answers(answers_path))
    engines = _engines(cfg, world)
    todo = [(v, it) for v in cfg.variants for it in items if (v.name, it["key"]) not in done]
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="eval ab", unit="answer", file=__import__("sys").stderr)
    t0 = time.perf_counter()
    with answers_path.open("a", encoding="utf-8") as f:
        for i, (v, it) in enumerate(todo):
            engine = engines[v.name]
            a = {"variant": v.name, "key": it["key"], "set": it["set"], "npc": it.get("npc")}
            try:
                npc = it.get("npc") or engine.cast.npcs[0].id
                reply = engine.say(npc, it["text"], session=f"ab-{i}-{random.Random(i).getrandbits(32):08x}",
                                   chapter=it.get("chapter", 1), use_adapter=v.adapters,
                                   route=None if v.route == "auto" else v.route, remember=False)
                a.update(text=reply.text, route=reply.route, sources=reply.sources, timings=reply.timings,
                         tokens=reply.tokens, grounding=reply.grounding,
                         evidence_text=" ".join(e.get("text", "") for e in reply.grounding.get("evidence", [])))
            except EternaError as e:
                a.update(error=str(e), text="", route=None, sources=[], timings={})
            f.write(json.dumps(a, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
            done[(v.name, it["key"])] = a
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    seconds = time.perf_counter() - t0
    first = next(iter(engines.values()))
    summary = score(cfg, world, items, done, first)
    summary["run"] = {"config": str(config_path), "items": len(items), "variants": [v.name for v in cfg.variants],
                      "answers_asked_now": len(todo), "seconds_now": round(seconds, 1), "seed": cfg.seed,
                      "backend": first.generator.name}
    from app.evaluation.report import write_reports

    write_reports(out, summary, items, done, cfg)
    return summary


def _context(first, world: EternaConfig) -> Context:
    markers = {n.id: n.markers for n in first.cast.npcs if n.markers is not None}
    voice = None
    if world.paths.style is not None and world.paths.style.is_dir():
        vc = VoiceClassifier(first.embedder, world.paths.style, [n.id for n in first.cast.npcs])
        voice = vc if vc.ok else None
    ids = [n.id for n in first.cast.npcs]
    vecs = first.embedder.encode([f"{n.name}. {n.persona} {n.style}" for n in first.cast.npcs])
    from app.evaluation.replies import voice_phrases

    return Context(cues=first.cues, markers=markers, selector=first.selector, voice=voice,
                   personas=(ids, vecs, first.embedder), phrases={n.id: voice_phrases(n) for n in first.cast.npcs})


def _in_scope(first, docs: dict, it: dict) -> bool:
    doc = docs.get(it.get("doc"))
    if doc is None:
        return True
    npc = first.cast.get(it["npc"])
    return npc.scope(it["chapter"]).allows(doc)


def score(cfg: EvalConfig, world: EternaConfig, items: list[dict], answers: dict, first) -> dict:
    ctx = _context(first, world)
    docs = first.index.documents()
    for it in items:
        if it["set"] == "facts":
            it["in_scope"] = _in_scope(first, docs, it)
    names = [v.name for v in cfg.variants]
    ref = cfg.reference or names[-1]
    values: dict[str, dict[str, dict[str, float]]] = {m: {v: {} for v in names} for m in METRICS}
    for it in items:
        for v in names:
            a = answers.get((v, it["key"]))
            if a is None or a.get("error"):
                continue
            for m in METRICS.values():
                if it["set"] in m.sets:
                    x = m.fn(a, it, ctx)
                    if x is not None:
                        values[m.name][v][it["key"]] = float(x)
    table, comparisons = {}, []
    for m in METRICS.values():
        row = {}
        for k, v in enumerate(names):
            xs = np.array(list(values[m.name][v].values()))
            if xs.size:
                mean, lo, hi = mean_ci(xs, cfg.bootstrap, cfg.seed + k)
                row[v] = {"mean": round(mean, 4), "low": round(lo, 4), "high": round(hi, 4), "n": int(xs.size)}
        if row:
            table[m.name] = row
        for k, v in enumerate(names):
            if v == ref:
                continue
            keys = sorted(set(values[m.name][v]) & set(values[m.name][ref]))
            if len(keys) < 2:
                continue
            a = np.array([values[m.name][v][x] for x in keys])
            b = np.array([values[m.name][ref][x] for x in keys])
            d, lo, hi = paired_diff_ci(a, b, cfg.bootstrap, cfg.seed + 100 + k)
            comp = {"metric": m.name, "variant": v, "reference": ref, "diff": round(d, 4), "low": round(lo, 4),
                    "high": round(hi, 4), "n": len(keys), "higher_is_better": m.higher_is_better}
            if m.kind == BINARY:
                only_a, only_b, p = mcnemar_exact(a > 0.5, b > 0.5)
                comp.update(test="mcnemar_exact", only_variant=only_a, only_reference=only_b, p=p)
            comparisons.append(comp)
    tested = [c for c in comparisons if "p" in c]
    for c, adj in zip(tested, holm([c["p"] for c in tested])):
        c["p_holm"] = adj
    per_npc: dict[str, dict[str, dict[str, float]]] = {}
    npc_of = {it["key"]: it.get("npc") for it in items}
    for mname in ("contains_gold", "voice_markers", "voice_classifier", "persona_consistency"):
        for v in names:
            for key, x in values[mname][v].items():
                per_npc.setdefault(npc_of[key], {}).setdefault(f"{mname}:{v}", []).append(x)
    per_npc = {n: {k: round(float(np.mean(x)), 3) for k, x in d.items()} for n, d in per_npc.items()}
    router = _confusion(items, answers, names)
    return {"reference": ref, "table": table, "comparisons": comparisons, "per_npc": per_npc, "router": router,
            "metrics": {m.name: {"help": m.help, "kind": m.kind, "higher_is_better": m.higher_is_better}
                        for m in METRICS.values()},
            "voice_classifier": ctx.voice is not None}


def _confusion(items, answers, names) -> dict:
    from app.router import LABELS

    out = {}
    for v in names:
        conf = {g: dict.fromkeys(LABELS, 0) for g in LABELS}
        n = 0
        for it in items:
            a = answers.get((v, it["key"]))
            if it["set"] == "router" and a and a.get("route") in LABELS and it["label"] in LABELS:
                conf[it["label"]][a["route"]] += 1
                n += 1
        if n:
            out[v] = conf
    return out
