"""The A/B harness on a tiny real model: variants on one loaded model, resumable answers, metrics checked by hand,
paired statistics, and the reports."""

import json

import numpy as np
import pytest
import yaml

from app.evaluation.ab import run_ab
from app.evaluation.metrics import exact_match, squad_normalise, token_f1
from app.evaluation.stats import holm, mcnemar_exact, mean_ci, paired_diff_ci
from retrieval.errors import ConfigError, EternaError


def test_squad_metrics_by_hand():
    assert squad_normalise("The  Founding, of 1387!") == "founding of 1387"
    assert exact_match("the Oriol Santpere.", ["Oriol Santpere"]) == 1.0
    assert exact_match("It was Oriol Santpere", ["Oriol Santpere"]) == 0.0
    # pred tokens: it was oriol santpere (4); gold: oriol santpere (2); common 2 -> P .5 R 1 -> F1 2/3
    assert token_f1("It was Oriol Santpere", ["Oriol Santpere"]) == pytest.approx(2 / 3)
    assert token_f1("nothing here", ["Oriol Santpere"]) == 0.0


def test_text_overlap_metrics_by_hand():
    import sacrebleu
    from rouge_score import rouge_scorer

    r = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    # LCS of "a b c d" and "a c d" is 3: P 3/4, R 3/3 -> F = 6/7
    assert r.score("a c d", "a b c d")["rougeL"].fmeasure == pytest.approx(6 / 7)
    assert sacrebleu.sentence_bleu("the cat sat on the mat", ["the cat sat on the mat"]).score == pytest.approx(100)
    assert sacrebleu.sentence_chrf("abc", ["xyz"]).score == pytest.approx(0)


def test_paired_statistics():
    a = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0], dtype=bool)
    b = np.array([1, 1, 1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)
    only_a, only_b, p = mcnemar_exact(a, b)
    assert (only_a, only_b) == (0, 5) and p == pytest.approx(2 * 0.5 ** 5)  # exact binomial, two-sided
    d, lo, hi = paired_diff_ci(a, b, seed=1)
    assert d == pytest.approx(0.5) and 0 < lo <= d <= hi <= 1
    assert mean_ci(np.ones(5)) == (1.0, 1.0, 1.0)
    assert paired_diff_ci(a, b, seed=1) == (d, lo, hi)  # seeded: reruns reproduce
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


@pytest.fixture
def eval_config(project, tmp_path):
    root = project.parent
    (root / "facts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [
        {"id": "f1", "npc": "archivist", "question": "How many books can a reader borrow at once?",
         "answer": "3 books", "doc": "lending-rules", "chapter": 1},
        {"id": "f2", "npc": "director", "question": "Who built the great clock?", "answer": "Oriol Santpere",
         "doc": "clock-room", "chapter": 1},
        {"id": "f3", "npc": "director", "question": "Who set the Fire of 1731?", "answer": "Anselmo",
         "doc": "the-fire-truth", "chapter": 1}]), encoding="utf-8")
    (root / "style.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [
        {"id": "s1", "npc": "warden", "text": "Good evening, warden!"},
        {"id": "s2", "npc": "archivist", "text": "Hello there, how are you?"}]), encoding="utf-8")
    (root / "router.jsonl").write_text("".join(json.dumps(x) + "\n" for x in [
        {"id": "r1", "npc": "warden", "text": "How many books can I borrow?", "label": "fact"},
        {"id": "r2", "npc": "warden", "text": "hello!", "label": "style"}]), encoding="utf-8")
    cfg = {"world": str(project), "sets": {"facts": "facts.jsonl", "style": "style.jsonl", "router": "router.jsonl"},
           "variants": [{"name": "base", "adapters": False, "route": "style"},
                        {"name": "base+rag", "adapters": False, "route": "fact"},
                        {"name": "routed"}], "bootstrap": 200}
    path = root / "ab.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_ab_runs_every_item_through_every_variant_and_reports(eval_config, tmp_path):
    out = tmp_path / "run"
    summary = run_ab(eval_config, out, progress=False)
    answers = [json.loads(x) for x in (out / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 7 * 3 and {a["variant"] for a in answers} == {"base", "base+rag", "routed"}
    assert {a["route"] for a in answers if a["variant"] == "base"} == {"style"}  # forced: no retrieval
    t = summary["table"]
    assert t["contains_gold"]["base+rag"]["mean"] == 1.0 and t["contains_gold"]["base"]["mean"] < 1.0
    assert t["deflects"]["base+rag"]["mean"] == 1.0  # the chapter-3 question: "I do not know"
    # route_correct against the labelled lines (r1 fact, r2 style): a forced route is right on one of the two, the
    # router on both; the confusion table counts the same routes
    routes = {a["key"]: a["route"] for a in answers if a["variant"] == "routed" and a["set"] == "router"}
    assert routes == {"router:r1": "fact", "router:r2": "style"}
    assert t["route_correct"]["base"]["mean"] == t["route_correct"]["base+rag"]["mean"] == 0.5
    assert t["route_correct"]["routed"]["mean"] == 1.0
    assert summary["router"]["routed"]["fact"]["fact"] == summary["router"]["routed"]["style"]["style"] == 1
    comp = {(c["metric"], c["variant"]): c for c in summary["comparisons"]}
    assert comp[("contains_gold", "base")]["test"] == "mcnemar_exact" and "p_holm" in comp[("contains_gold", "base")]
    md = (out / "report.md").read_text()
    assert "## Headline" in md and "base+rag" in md and "p_holm" in md
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 2 and "<table>" in page
    # a rerun needs --resume; with it, nothing is asked again and the numbers are the same
    with pytest.raises(EternaError, match="--resume"):
        run_ab(eval_config, out, progress=False)
    again = run_ab(eval_config, out, resume=True, progress=False)
    assert again["run"]["answers_asked_now"] == 0 and again["table"] == summary["table"]


def test_ab_resume_after_a_crash_asks_only_what_is_missing(eval_config, tmp_path):
    out = tmp_path / "run"
    run_ab(eval_config, out, limit=1, progress=False)
    lines = (out / "answers.jsonl").read_text().splitlines()
    (out / "answers.jsonl").write_text("\n".join(lines[:4]) + '\n{"variant": "base", "ke', encoding="utf-8")
    summary = run_ab(eval_config, out, limit=1, resume=True, progress=False)
    assert summary["run"]["answers_asked_now"] == len(lines) - 4


def test_eval_config_errors_name_the_file(tmp_path):
    from app.evaluation.ab import EvalConfig

    bad = tmp_path / "bad.yaml"
    bad.write_text("world: x.yaml\nvariants: [{name: a}, {name: a}]\n")
    with pytest.raises(ConfigError, match="bad.yaml.*unique"):
        EvalConfig.load(bad)
    bad.write_text("world: x.yaml\nvariants: [{name: a, route: sideways}, {name: b}]\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        EvalConfig.load(bad)


def test_a_variant_without_adapters_loads_none(eval_config):
    """The default cast ships adapters for the default base; a base variant must run on any base model."""
    from app.config import EternaConfig
    from app.evaluation.ab import EvalConfig, _engines
    from retrieval.errors import AdapterError
    from tests.conftest import REPO

    npcs = eval_config.parent / "npcs.yaml"
    shipped = REPO / "corpora" / "library" / "adapters" / "warden"  # trained on SmolLM2, not on the tiny model
    npcs.write_text(npcs.read_text().replace("knows: [room, rule, character]\n    adapter: null",
                                             f"knows: [room, rule, character]\n    adapter: {shipped}"))
    cfg = yaml.safe_load(eval_config.read_text())
    cfg["variants"] = [{"name": "base", "adapters": False, "route": "style"},
                       {"name": "base+rag", "adapters": False, "route": "fact"}]
    eval_config.write_text(yaml.safe_dump(cfg))
    ec = EvalConfig.load(eval_config)
    engines = _engines(ec, EternaConfig.load(ec.world))
    assert engines["base"].generator.adapters == {} and engines["base+rag"].adapter_names == {}
    assert engines["base"].say("warden", "hello", route="style", remember=False).adapter is None
    cfg["variants"].append({"name": "routed"})
    eval_config.write_text(yaml.safe_dump(cfg))
    with pytest.raises(AdapterError, match="trained on base model"):
        _engines(EvalConfig.load(eval_config), EternaConfig.load(ec.world))


def test_a_variant_may_name_another_base_model(eval_config, tiny_llm_dir, tmp_path):
    import shutil

    from app.config import EternaConfig
    from app.evaluation.ab import EvalConfig, _engines

    other = tmp_path / "other-llm"
    shutil.copytree(tiny_llm_dir, other)
    cfg = yaml.safe_load(eval_config.read_text())
    cfg["variants"] = [{"name": "a", "route": "style"}, {"name": "b", "route": "style", "llm": str(other)},
                       {"name": "c", "route": "style", "llm": str(other)}]
    eval_config.write_text(yaml.safe_dump(cfg))
    ec = EvalConfig.load(eval_config)
    engines = _engines(ec, EternaConfig.load(ec.world))
    assert engines["b"].generator is engines["c"].generator is not engines["a"].generator  # one load per model
    assert engines["b"].generator.model_dir == other
    assert engines["b"].say("warden", "hello", route="style", remember=False).route == "style"


def test_only_runs_the_named_sets(eval_config):
    from app.config import EternaConfig
    from app.evaluation.ab import EvalConfig, load_items

    cfg = yaml.safe_load(eval_config.read_text())
    cfg["only"] = ["style"]
    eval_config.write_text(yaml.safe_dump(cfg))
    ec = EvalConfig.load(eval_config)
    items = load_items(ec, EternaConfig.load(ec.world), None)
    assert [i["key"] for i in items] == ["style:s1", "style:s2"]
    cfg["only"] = ["chat"]
    eval_config.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="ab.yaml"):
        EvalConfig.load(eval_config)
