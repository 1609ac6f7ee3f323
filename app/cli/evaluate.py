"""`eterna eval`: a world's figures (facts, quality, router, actions, A/B runs and their review, retrieval,
multiple choice; scenes: app/cli/scene.py)."""

from __future__ import annotations

import json
from pathlib import Path

from app.cli.common import add_flags, emit, load_config, make_engine, progress, retrieval_modes
from retrieval.errors import EternaError


def register(sub) -> None:
    ev = sub.add_parser("eval", help="measure a world's figures").add_subparsers(dest="sub", required=True)
    sp = ev.add_parser("facts", help="fact questions: gold answer in the reply, spoilers, 'I do not know'")
    sp.add_argument("--file", required=True, help='JSONL {"npc", "question", "answers", "chapter", "doc"} (+ "state")')
    sp.add_argument("--limit", type=int, default=0, help="first N items only")
    sp.add_argument("--items", action="store_true", help="include every item's reply in the JSON report")
    add_flags(sp, npcs=True, index=True)
    sp.set_defaults(fn=cmd_eval_facts)
    sp = ev.add_parser("quality", help="small talk as a player meets it: length, loops, clean text, breaks, "
                                       "invented specifics, signature phrases, fluency; --qa adds fact questions")
    sp.add_argument("--file", required=True, help='JSONL {"npc", "text"} (e.g. eval/style_prompts.jsonl)')
    sp.add_argument("--qa", help="fact questions too (the `eval facts` format): answer-first, length, clean text")
    sp.add_argument("--limit", type=int, default=0, help="first N lines (and questions) only")
    sp.add_argument("--items", action="store_true", help="include every reply in the JSON report")
    sp.add_argument("--fluency", action="store_true", help="score fluency under the base model (loads it in fp32)")
    sp.add_argument("--no-adapters", action="store_true", help="the base model speaks for every character")
    add_flags(sp, npcs=True, index=True)
    sp.set_defaults(fn=cmd_eval_quality)
    sp = ev.add_parser("router", help="router accuracy, per-label recall and precision, confusion")
    sp.add_argument("--file", required=True, help='JSONL {"text", "label"}')
    sp.add_argument("--errors", action="store_true", help="include the misrouted lines in the JSON report")
    add_flags(sp, npcs=True, index=True)
    sp.set_defaults(fn=cmd_eval_router)
    sp = ev.add_parser("actions", help="actions: precision, recall, args exact, refusals, asks, confusion")
    sp.add_argument("--file", required=True, help='JSONL {"npc", "text", "state", "expect"}; expect {"name", "args"} '
                                                  '| null | {"refused": NAME} | {"incomplete": NAME}')
    sp.add_argument("--items", action="store_true", help="include every line's reply in the JSON report")
    add_flags(sp, npcs=True, index=True)
    sp.set_defaults(fn=cmd_eval_actions)

    sp = ev.add_parser("ab", help="A/B harness: the same items through every variant; report with intervals")
    sp.add_argument("--config", dest="eval_config", required=True, help="eval config, e.g. configs/eval/NAME.yaml")
    sp.add_argument("--out", required=True, help="output folder (answers.jsonl, summary.json, report.md/html)")
    sp.add_argument("--limit", type=int, help="items per set at most")
    sp.add_argument("--resume", action="store_true", help="finish a run in --out, asking only what is missing")
    add_flags(sp)
    sp.set_defaults(fn=cmd_eval_ab)

    sp = ev.add_parser("retrieval", help="retrieval quality on a BEIR folder (nDCG@10, recall, MRR)")
    sp.add_argument("--beir", required=True, help="folder with corpus.jsonl[.gz], queries.jsonl, qrels/<split>.tsv")
    sp.add_argument("--split", default="test")
    sp.add_argument("--mode", default="hybrid", choices=[*retrieval_modes(), "all"],
                    help="all: every registered mode side by side, one JSON object per mode")
    sp.add_argument("--k", type=int, default=100, help="documents ranked per query")
    sp.add_argument("--weight", type=float,
                    help="hybrid: weight of dense scores (0-1; default retrieval.hybrid_weight)")
    sp.add_argument("--limit", type=int, help="first N judged queries only")
    sp.add_argument("--sentence-weight", type=float, help="dense: weight of a document's best sentence "
                    "(0-1; default retrieval.sentence_weight; 0: documents alone, as before session 47)")
    sp.add_argument("--tune-on", metavar="SPLIT", help="choose the hybrid weight on this split (e.g. train or dev; "
                                                       "a grid over 0-1), then report --split with it")
    add_flags(sp)
    sp.set_defaults(fn=cmd_eval_retrieval)

    sp = ev.add_parser("review", help="blind side-by-side review page of an A/B run, and importing its choices")
    sp.add_argument("--run", help="an `eval ab` output folder")
    sp.add_argument("--out", help="the page to write")
    sp.add_argument("--a", help="first variant (default: the first that is not the reference)")
    sp.add_argument("--b", help="second variant (default: the run's reference)")
    sp.add_argument("--limit", type=int, help="pairs at most")
    sp.add_argument("--import", dest="import_file", help="a choices.json downloaded from the page")
    sp.add_argument("--pairs-out", help="with --import: write the preferences as DPO pairs here, <npc>.jsonl")
    add_flags(sp)
    sp.set_defaults(fn=cmd_eval_review)

    sp = ev.add_parser("mc", help="multiple-choice accuracy by log-likelihood (lm-eval protocol)")
    sp.add_argument("--file", required=True)
    sp.add_argument("--format", required=True, choices=["arc", "mmlu", "hellaswag"])
    sp.add_argument("--adapter", help="a PEFT adapter to score with")
    sp.add_argument("--forgetting", metavar="NPCS_FILE", help="forgetting report: the base, then each adapter of "
                                                             "this cast file, with the delta and its interval")
    sp.add_argument("--limit", type=int)
    sp.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    add_flags(sp)
    sp.set_defaults(fn=cmd_eval_mc)
    from app.cli.scene import register_eval

    register_eval(ev)  # `eval scenes`


def _eval_config(args):
    """Evaluation never writes player sessions: memory stays in the process."""
    cfg = load_config(args)
    return cfg.model_copy(update={"paths": cfg.paths.model_copy(update={"sessions": None})})


def cmd_eval_facts(args) -> None:
    from app.evaluation.facts import facts_report, load_fact_items

    items = load_fact_items(Path(args.file))  # fail on a bad file before loading models
    if args.limit:
        items = items[: args.limit]
    engine = make_engine(args, _eval_config(args))
    report = facts_report(engine, items, keep_items=args.items, progress=progress("facts"))
    text = (f"contains gold {report['contains_gold']} ({report['n_in_scope']} in scope), gold in sources "
            f"{report['gold_in_sources']}, spoiler leaks {report['spoiler_leaks']}, idk correct "
            f"{report['idk_correct']} ({report['n_out_of_scope']} out of scope), p50 {report['p50_ms']} ms; "
            f"words p50 {report.get('words_p50')} p90 {report.get('words_p90')}, answer first "
            f"{report.get('answer_first')}, clean {report.get('clean')}, repeats {report.get('repeat_rate')}")
    emit(args, report, text)


def cmd_eval_quality(args) -> None:
    """Small talk scored as a player meets it (app/evaluation/replies.py); with --qa, fact questions too."""
    from app.evaluation.facts import facts_report, load_fact_items
    from app.evaluation.replies import load_lines, quality_report

    lines = load_lines(Path(args.file))
    qa = load_fact_items(Path(args.qa)) if args.qa else None
    if args.limit:
        lines, qa = lines[: args.limit], qa and qa[: args.limit]
    engine = make_engine(args, _eval_config(args))
    report = quality_report(engine, lines, with_fluency=args.fluency, keep_items=args.items,
                            progress=progress("quality"))
    if qa is not None:
        report["facts"] = facts_report(engine, qa, keep_items=args.items, progress=progress("facts"))
    s = report["summary"]
    text = (f"{report['n']} replies ({report['generated']} generated): words p50 {s.get('words_median')} p90 "
            f"{s.get('words_p90')}, repeats {s.get('repeats_rate')}, clean {s.get('clean_rate')}, breaks "
            f"{s.get('breaks_rate')}, invented specifics {s.get('invented_rate')}, signature phrase "
            f"{s.get('signature_rate')}, in voice {s.get('in_voice_rate')}"
            + (f", fluency {s.get('fluency_median')}" if args.fluency else ""))
    emit(args, report, text)


def cmd_eval_router(args) -> None:
    from app.config import Cast
    from app.cues import Cues
    from app.dialogue import build_router
    from app.evaluation.facts import router_report
    from app.router import load_router_items
    from retrieval.embeddings import SentenceTransformerEmbedder
    from retrieval.index import LoreIndex

    cfg = load_config(args)
    items = load_router_items(Path(args.file))
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    emb = SentenceTransformerEmbedder(cfg.models.embedder, dtype=cfg.models.embedder_dtype)
    index = LoreIndex.open(cfg.paths.index, emb)
    router = build_router(cfg, cast, emb, index, Cues.load(cfg.world.cues))
    report = router_report(router, index, items, keep_errors=args.errors)
    lines = [f"accuracy {report['accuracy']} on {report['n']}"] + [
        f"  {g:8s} recall {v['recall']} precision {v['precision']} (n={v['n']})"
        for g, v in report["per_label"].items()]
    emit(args, report, "\n".join(lines))


def cmd_eval_actions(args) -> None:
    from app.evaluation.actions import actions_report, load_action_items

    items = load_action_items(Path(args.file))  # fail on a bad file before loading models
    engine = make_engine(args, _eval_config(args))
    r = actions_report(engine, items, keep_items=args.items, progress=progress("actions"))
    lines = [f"precision {r['precision']} ({r['n_returned_actions']} returned), recall {r['recall']}, args exact "
             f"{r['args_exact']} ({r['n_expected_actions']} expected), correct refusals {r['correct_refusals']} "
             f"(n={r['n_refusals']}), correct asks {r['correct_asks']} (n={r['n_asks']}), no action when none "
             f"{r['no_action_correct']}, p50 action turn {r['p50_action_turn_ms']} ms (all {r['p50_turn_ms']} ms)",
             "confusion (expected -> got):"]
    lines += [f"  {want}: " + ", ".join(f"{got} {n}" for got, n in sorted(row.items())) for want, row in
              sorted(r["confusion"].items())]
    emit(args, r, "\n".join(lines))


def cmd_eval_ab(args) -> None:
    from app.evaluation.ab import run_ab

    summary = run_ab(Path(args.eval_config), Path(args.out), limit=args.limit, resume=args.resume,
                     progress=not args.json)
    ref = summary["reference"]
    lines = [f"report: {Path(args.out) / 'report.md'} (and report.html, summary.json, answers.jsonl)"]
    for m, row in summary["table"].items():
        lines.append(f"  {m:16s} " + "  ".join(f"{v}={c['mean']:.3f}" for v, c in row.items()))
    lines.append(f"  differences are against `{ref}`; see the report for intervals and tests")
    emit(args, {k: summary[k] for k in ("reference", "table", "comparisons", "run")}, "\n".join(lines))


def cmd_eval_mc(args) -> None:
    from app.evaluation.mc import forgetting_report, load_mc, score_mc
    from tuning.base import load_base, prepare_model

    cfg = load_config(args)
    items = load_mc(Path(args.file), args.format, args.limit)
    model_dir = prepare_model(cfg.models.llm, cfg.models.cache_dir)
    model, tok = load_base(model_dir, args.dtype)
    if args.forgetting:
        from app.config import Cast

        cast = Cast.load(Path(args.forgetting), cfg.world)
        adapters = {n.id: n.adapter for n in cast.npcs if n.adapter is not None}
        if not adapters:
            raise EternaError(f"{args.forgetting}: no NPC has an adapter; nothing to compare")
        report = forgetting_report(model, tok, model_dir, items, adapters)
        lines = [f"base: accuracy {report['base']['accuracy']} (n={report['n']})"] + [
            f"  {npc:14s} {r['accuracy']:.4f}  delta {r['delta']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]  "
            f"McNemar p {r['p']:.3g}" for npc, r in report["adapters"].items()]
        emit(args, report, "\n".join(lines))
        return
    if args.adapter:
        from tuning.adapters import attach_adapter, use_adapter
        from tuning.base import model_fingerprint

        model = attach_adapter(model, "eval", Path(args.adapter), model_fingerprint(model_dir))
        with use_adapter(model, "eval"):
            result = score_mc(model, tok, items)
    else:
        result = score_mc(model, tok, items)
    out = {k: result[k] for k in ("accuracy", "acc_norm", "n")}
    out.update(format=args.format, file=str(args.file), adapter=args.adapter, dtype=args.dtype)
    emit(args, out, f"accuracy {out['accuracy']}  acc_norm {out['acc_norm']}  (n={out['n']})")


def cmd_eval_retrieval(args) -> None:
    from app.evaluation.retrieval_eval import evaluate_beir, needs_embedder
    from retrieval.embeddings import SentenceTransformerEmbedder

    cfg = load_config(args)
    modes = retrieval_modes() if args.mode == "all" else [args.mode]
    embedder = SentenceTransformerEmbedder(cfg.models.embedder, dtype=cfg.models.embedder_dtype) \
        if needs_embedder(modes) or args.tune_on else None
    name = embedder.id if embedder is not None else cfg.models.embedder  # the dtype is part of the id: own cache
    weight = cfg.retrieval.hybrid_weight if args.weight is None else args.weight
    sentence_weight = cfg.retrieval.sentence_weight if args.sentence_weight is None else args.sentence_weight
    tuned = None
    if args.tune_on:
        if args.tune_on == args.split:
            raise EternaError(f"--tune-on {args.tune_on}: tune on another split than the one reported (--split)")
        from app.evaluation.retrieval_eval import tune_weight

        tuned = tune_weight(Path(args.beir), embedder, name, cfg.models.cache_dir / "beir",
                            split=args.tune_on, k=args.k, sentence_weight=sentence_weight)
        weight = tuned["weight"]
    res = {m: evaluate_beir(Path(args.beir), embedder, name, cfg.models.cache_dir / "beir", split=args.split, mode=m,
                            k=args.k, weight=weight, limit=args.limit, sentence_weight=sentence_weight) for m in modes}
    keys = ("ndcg@10", "recall@5", "recall@100", "mrr@10", "queries", "docs", "ms_per_query")
    text = "\n".join(f"{m:<7}" + "  ".join(f"{k} {r[k]}" for k in keys) for m, r in res.items())
    out = res[modes[0]] if len(modes) == 1 else res
    if tuned:
        out = {**out, "tuned": tuned}
        text += f"\nhybrid weight {tuned['weight']} chosen on the {tuned['split']} split ({tuned['queries']} queries)"
    emit(args, out, text)


def cmd_eval_review(args) -> None:
    from app.evaluation.review import import_choices, write_review_page

    if args.import_file:
        report = import_choices(Path(args.import_file), Path(args.pairs_out) if args.pairs_out else None)
        emit(args, report, json.dumps(report, indent=1))
        return
    if not args.run or not args.out:
        raise EternaError("eval review needs --run DIR --out PAGE.html, or --import CHOICES.json")
    info = write_review_page(Path(args.run), Path(args.out), args.a, args.b, args.limit)
    emit(args, info, f"{info['pairs']} pairs: open {info['page']}; the key is in {info['key']}")
