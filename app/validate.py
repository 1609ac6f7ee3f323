"""`eterna validate`: check the configs and every shipped corpus file against the code (torchtune-style).

Returns counts per file group. Configs, lore, cues, eval and scene files: the first problem raises a typed error
naming the file and line. Training data (style and preference sets) goes through the data gate (tuning/gate.py),
which reports every problem: `report["data"]` holds one gate report per file, and `ok` is false when any has errors.
The cast's adapters must still match what they were trained on (`adapter_problems`): an AdapterError otherwise.
"""

from __future__ import annotations

from pathlib import Path

from app.actions import action_problems
from app.config import Cast, EternaConfig
from app.cues import Cues
from app.demo import load_scene
from app.scene_files import check_scene_file, first_line, is_header
from app.evaluation.facts import load_fact_items
from app.router import LABELS, load_router_items, load_seeds
from retrieval.corpus import load_corpus
from retrieval.errors import AdapterError, CorpusError
from retrieval.fileio import read_jsonl
from retrieval.gates import State, compile_gate
from tuning.base import model_fingerprint, prepared_checkpoint
from tuning.facts import FactLinter
from tuning.gate import GateReport, gate_file
from tuning.sft import SFTRecipe


def data_tokenizer(cfg: EternaConfig):
    """The base model's tokenizer if its checkpoint is ready (no conversion), else None: lengths are estimated."""
    path = prepared_checkpoint(cfg.models.llm, cfg.models.cache_dir)
    if path is None:
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def lore_linter(docs, exempt: list[str]) -> FactLinter:
    return FactLinter([d.body for d in docs], exempt=exempt)


def data_section(reports: list[GateReport]) -> dict:
    return {"ok": all(r.ok for r in reports), "errors": sum(len(r.errors) for r in reports),
            "warnings": sum(len(r.warnings) for r in reports), "files": [r.to_json() for r in reports]}


def voice_markers(cast: Cast) -> dict[str, str]:
    """Per character: its declared markers, the ones derived from its style text (app/voice.py), or a warning
    that its style text quotes no opening or closing phrase (its extracted replies then carry no voice)."""
    from app.voice import derive_markers

    out = {}
    for n in cast.npcs:
        if n.markers is not None:
            out[n.id] = "declared"
        elif (m := derive_markers(n.style)) is not None:
            out[n.id] = f"derived: opens {m.opens}, closes {m.closes}"
        else:
            out[n.id] = ("warning: no markers, and the style text quotes no opening or closing phrase to derive "
                         "them from; add `markers:` to the cast entry, or quote them in its style")
    return out


def adapter_problems(cfg: EternaConfig, cast: Cast, fingerprint: str | None = None) -> dict[str, list[str]]:
    """For each NPC with an adapter: what its manifest no longer matches (an empty list when nothing): the hash
    of its style set, the system prompt the config builds now for it, and the base model's `fingerprint` if given."""
    from app.prompt import system_prompt
    from tuning.adapters import manifest_problems, read_adapter_manifest

    out = {}
    for npc in cast.npcs:
        if npc.adapter is None:
            continue
        data = cfg.paths.style / f"{npc.id}.jsonl" if cfg.paths.style is not None else None
        out[npc.id] = manifest_problems(read_adapter_manifest(npc.adapter), npc.adapter, npc=npc.id, data=data,
                                        system=system_prompt(npc, cfg.world, cfg.prompts), fingerprint=fingerprint)
    return out


def gate_warnings(docs, schema: dict[str, str] | None) -> list[str]:
    """`path:line: requires ...: problem` for each lore `requires` that compares across types (always false) or,
    when the world declares a `state:` schema, reads a name the schema lacks (a warning: states grow)."""
    out = []
    for d in docs:
        if d.requires is None:
            continue
        lines = Path(d.path).read_text(encoding="utf-8").splitlines()
        line = next((i + 1 for i, t in enumerate(lines) if t.lstrip().startswith("requires:")), 1)
        out += [f"warning: {d.path}:{line}: requires {d.requires!r}: {p}"
                for p in compile_gate(d.requires).problems(schema)]
    return out


def validate_facts(path: Path, docs: dict, cast: Cast) -> dict:
    """Each item's doc exists, one of its answers occurs in the doc (the others may be other forms of it), its npc
    exists. Counts in-scope and other items."""
    counts = {"in_scope": 0, "spoiler": 0, "out_of_scope": 0, "gated": 0}
    for it in load_fact_items(path):
        where = f"{path}:{it['line']}"
        doc = docs.get(it["doc"])
        if doc is None:
            raise CorpusError(f"{where}: doc {it['doc']!r} is not in the lore corpus")
        body = doc.body.lower()
        if not any(a.lower() in body for a in it["answers"]):  # other forms ("37" for "thirty-seven") may differ
            raise CorpusError(f"{where}: none of the answers {it['answers']} occurs in {doc.path}")
        npc = cast.get(it["npc"])
        if doc.chapter > it["chapter"]:
            counts["spoiler"] += 1
        elif not npc.scope(state=State.of(it.get("state"))).allows(doc) and npc.scope().allows(doc):
            counts["gated"] += 1
        elif not npc.scope().allows(doc):  # a Document has a chunk's visibility fields
            counts["out_of_scope"] += 1
        else:
            counts["in_scope"] += 1
    return counts


def validate_action_items(path: Path, cast: Cast) -> int:
    """An `eval actions` file against the cast: known characters, declared action names, expected arguments valid
    under the action's schema, and lines that paraphrase the examples rather than copy them."""
    from app.action_args import norm, valid
    from app.evaluation.actions import load_action_items

    items = load_action_items(path)
    for n, it in enumerate(items, 1):
        npc, e = cast.get(it["npc"]), it["expect"]
        declared = {a.name: a for a in npc.actions}
        name = None if e is None else e.get("name") or e.get("refused") or e.get("incomplete")
        if name is not None and name not in declared:
            raise CorpusError(f"{path}:{n}: {npc.id} declares no action {name!r} ({', '.join(declared) or 'none'})")
        if e is not None and "args" in e and not valid(declared[name].params, e["args"]):
            raise CorpusError(f"{path}:{n}: expected args {e['args']} do not pass {name}'s params schema")
        copied = [a.name for a in npc.actions if norm(it["text"]) in {norm(x) for x in a.examples}]
        if copied:
            raise CorpusError(f"{path}:{n}: the line copies an example of {copied[0]}; eval lines paraphrase them")
    return len(items)


def validate_project(cfg: EternaConfig, tokenizer=None, reports: list[GateReport] | None = None) -> dict:
    """Every file the config names: cast against the world, lore against kinds and cast, cues, data sets.

    Style and preference files go through the gate with the SFT recipe's defaults (max_length, overlong policy),
    the character's system prompt and the lore's fact linter; `reports`, when given, receives the gate reports."""
    from app.prompt import system_prompt

    cast = Cast.load(cfg.paths.npcs, cfg.world)
    Cues.load(cfg.world.cues)
    report: dict[str, object] = {"world": cfg.world.name, "npcs": len(cast.npcs)}
    docs = {d.id: d for d in load_corpus(cfg.paths.corpus, cfg.world.kinds, {n.id for n in cast.npcs})}
    report["lore_documents"] = len(docs)
    report["lore_chapters"] = {c: sum(d.chapter == c for d in docs.values()) for c in sorted(
        {d.chapter for d in docs.values()})}
    report["lore_gated"] = sum(d.requires is not None for d in docs.values())
    report["gate_warnings"] = gate_warnings(docs.values(), cfg.world.state)
    report["actions"] = sum(len(n.actions) for n in cast.npcs)  # names, schemas, gates checked by Cast.load
    report["gate_warnings"] += [f"warning: {cfg.paths.npcs}: {p}" for p in action_problems(cast.npcs, cfg.world.state)]
    used = {d.kind for d in docs.values()}
    for i, n in enumerate(cast.npcs):
        if isinstance(n.knows, list) and not set(n.knows) & used:
            raise CorpusError(f"{cfg.paths.npcs}: npcs.{i}.knows: no lore document has any of the kinds "
                              f"{', '.join(n.knows)}; {n.id} would know nothing")
    checkpoint = prepared_checkpoint(cfg.models.llm, cfg.models.cache_dir)
    fingerprint = model_fingerprint(checkpoint) if checkpoint is not None else None
    for npc, problems in adapter_problems(cfg, cast, fingerprint).items():
        if problems:
            raise AdapterError(problems[0])
    report["adapters"] = sum(n.adapter is not None for n in cast.npcs)
    if cfg.models.persona_adapter is not None:  # who it speaks for, and that it was trained on this base
        from tuning.adapters import SCALED, check_base, read_adapter_manifest

        shared = read_adapter_manifest(cfg.models.persona_adapter)
        if fingerprint is not None:
            check_base(shared, cfg.models.persona_adapter, fingerprint)
        speaks = [n.id for n in cast.npcs if n.adapter is None and n.model is None]
        strength = shared.get(SCALED, {}).get("total_factor", 1.0)
        report["persona_adapter"] = (f"{cfg.models.persona_adapter} (strength {strength:g}) speaks for "
                                     f"{', '.join(speaks) or 'no one: every character has its own adapter or model'}")
    report["voice_markers"] = voice_markers(cast)
    recipe = SFTRecipe()
    gates: list[GateReport] = [] if reports is None else reports
    for kind, data_kind in (("style", "chat"), ("preferences", "preference")):
        folder = getattr(cfg.paths, kind)
        for path in sorted(folder.glob("*.jsonl")) if folder is not None and folder.is_dir() else []:
            npc = cast.get(path.stem)  # a file per known NPC
            system = system_prompt(npc, cfg.world, cfg.prompts)
            gate = gate_file(path, kind=data_kind, max_length=recipe.max_length, overlong=recipe.overlong,
                             tokenizer=tokenizer, system=system, facts=lore_linter(docs.values(), [system]))
            gates.append(gate)
            report[f"{kind}/{path.stem}"] = gate.valid
    report["data"] = data_section(gates)
    ev = cfg.paths.eval
    if ev is not None and ev.is_dir():
        totals = {"in_scope": 0, "spoiler": 0, "out_of_scope": 0, "gated": 0}
        for p in sorted([*ev.glob("facts*.jsonl"), *ev.glob("gated*.jsonl")]):
            for k, v in validate_facts(p, docs, cast).items():
                totals[k] += v
        report["eval_facts"] = totals
        if (ev / "router.jsonl").is_file():
            labels = [it["label"] for it in load_router_items(ev / "router.jsonl")]
            report["eval_router"] = {lbl: labels.count(lbl) for lbl in LABELS}
        for p in sorted(ev.glob("actions*.jsonl")):  # the development lines and any held-out ones
            report[f"eval_{p.stem}"] = validate_action_items(p, cast)
        for name in ("adversarial", "style_prompts"):
            if (ev / f"{name}.jsonl").is_file():
                rows = list(read_jsonl(ev / f"{name}.jsonl", ("npc", "text")))  # adversarial may name no one
                for n, row in rows:
                    if name == "style_prompts" and row["npc"] not in {c.id for c in cast.npcs}:
                        raise CorpusError(f"{ev / f'{name}.jsonl'}:{n}: unknown npc {row['npc']!r}")
                report[f"eval_{name}"] = len(rows)
    if cfg.paths.router_seeds is not None:
        report["router_seeds"] = len(load_seeds(cfg.paths.router_seeds))
    scenes = cfg.paths.scenes
    for path in sorted(scenes.glob("*.jsonl")) if scenes is not None and scenes.is_dir() else []:
        if is_header(first_line(path) or {}):  # a scene with several characters (app/scene_files.py)
            report[f"scene/{path.stem}"] = check_scene_file(path, cast, labels=False)
            continue
        lines = load_scene(path)
        for line in lines:
            cast.get(line["npc"])
        report[f"scene/{path.stem}"] = len(lines)
    if ev is not None and (ev / "scenes.jsonl").is_file():
        report["eval_scenes"] = check_scene_file(ev / "scenes.jsonl", cast, labels=True)
    return report
