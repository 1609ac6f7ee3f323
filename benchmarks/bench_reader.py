"""The answer reader measured on worlds it was not trained on: folds of development worlds, each fold's reader trained
(tuning/reader.py, the `eterna train reader` recipe) on the other folds' fact questions, then every world of the fold
run through `eval facts` (app/evaluation/facts.py) with the shipped order (`rank`) and with `answer_order: reader`.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_reader.py \
        --folds eterna,station,clinic kestrel,alpine,ember ridge,outback,yuzu [--alone P] [--out DIR] \
        [--facts facts.jsonl facts_phrased.jsonl gated.jsonl gated_phrased.jsonl]

A fold is a comma-separated list of config names under configs/ (eterna = the Library); `--facts` names the files
the readers train on (`eterna train reader --facts`; default facts.jsonl). Printed, one JSON line per
world and a last `all` line: gold in reply, answer first, words p50 / p90, for `rank` and `reader`, over the
world's `paths.eval/facts.jsonl`, as `eval facts` counts them (the `all` line pools the in-scope replies). The
readers are written under --out (default a temporary folder), with every reply (`replies-<world>-<order>.jsonl`).
Indexes are each config's own (`index rebuild` first).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.config import EternaConfig, GroundingConfig  # noqa: E402
from app.dialogue import DialogueEngine  # noqa: E402
from app.evaluation.facts import facts_report, load_fact_items, quality_figures  # noqa: E402
from app.recipes.reader import world_rows  # noqa: E402
from retrieval.embeddings import resolve_embedder  # noqa: E402
from tuning.reader import ReaderRecipe, train_reader  # noqa: E402

FIGURES = ("contains_gold", "answer_first", "answer_first_of_gold", "words_p50", "words_p90", "clean",
           "idk_correct", "spoiler_leaks", "gate_leaks", "p50_ms")


def pooled(rows: list[dict]) -> dict:
    """The in-scope replies of several worlds together: gold, answer first, words p50 / p90 (as `eval facts`)."""
    ins = [r for r in rows if r["in_scope"]]
    return {"n_in_scope": len(ins), "contains_gold": round(sum(r["contains_gold"] for r in ins) / len(ins), 4),
            **quality_figures(ins)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folds", nargs="+", required=True, help="comma-separated config names, one fold each")
    shipped = GroundingConfig()
    ap.add_argument("--alone", type=lambda v: None if v == "none" else float(v), default=shipped.reader_alone,
                    help=f"grounding.reader_alone (default {shipped.reader_alone}; none: never one sentence alone)")
    ap.add_argument("--weight", type=float, default=shipped.reader_weight, help="grounding.reader_weight")
    ap.add_argument("--out", help="folder for the fold readers (default: a temporary one)")
    ap.add_argument("--facts", nargs="+", default=["facts.jsonl"], help="the files the readers train on")
    ap.add_argument("--reuse", action="store_true", help="keep a fold reader already in --out (another --alone or "
                                                         "--weight on the same readers)")
    args = ap.parse_args()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-reader-"))
    folds = [f.split(",") for f in args.folds]
    configs = {n: REPO / "configs" / f"{n}.yaml" for f in folds for n in f}
    need = [i for i in range(len(folds)) if not (args.reuse and (out / f"fold{i}" / "adapter_config.json").is_file())]
    rows = {n: world_rows(p, args.facts) for n, p in configs.items()} if need else {}
    pool: dict[str, list] = {"rank": [], "reader": []}
    for i, fold in enumerate(folds):
        train = [r for n in rows if n not in fold for r in rows[n]]
        cfg0 = EternaConfig.load(configs[fold[0]])
        folder = out / f"fold{i}"
        if args.reuse and (folder / "adapter_config.json").is_file():
            print(f"fold {i}: reusing {folder}", file=sys.stderr)
        else:
            train_reader(train, resolve_embedder(cfg0.models.embedder), folder, ReaderRecipe(),
                         base_spec=cfg0.models.embedder, sources={"worlds": [n for n in configs if n not in fold]},
                         built_by="benchmarks/bench_reader.py", log=lambda m: print(m, file=sys.stderr, flush=True))
        for name in fold:
            cfg = EternaConfig.load(configs[name])
            items = load_fact_items(cfg.paths.eval / "facts.jsonl")
            line = {"world": name, "fold": i, "items": len(items)}
            for order in ("rank", "reader"):
                g = cfg.grounding.model_copy(update={"answer_order": order, "reader": str(folder),
                                                     "reader_alone": args.alone, "reader_weight": args.weight})
                engine = DialogueEngine.from_settings(cfg.model_copy(update={"grounding": g}))
                rep = facts_report(engine, items, keep_items=True)
                line[order] = {k: rep.get(k) for k in FIGURES}
                pool[order] += rep["items"]
                with open(out / f"replies-{name}-{order}.jsonl", "w", encoding="utf-8") as f:
                    for r in rep["items"]:
                        f.write(json.dumps({k: r[k] for k in ("question", "answers", "text", "contains_gold",
                                                              "answer_first", "words")}, ensure_ascii=False) + "\n")
            print(json.dumps(line), flush=True)
    print(json.dumps({"world": "all", **{order: pooled(rows) for order, rows in pool.items()}}))


if __name__ == "__main__":
    main()
