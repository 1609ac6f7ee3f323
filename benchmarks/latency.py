"""Serving latency and throughput, measured side by side in one run. One JSON object per figure on stdout.

    .venv/bin/python benchmarks/latency.py [--quick] [--config configs/kestrel.yaml]
    .venv/bin/python benchmarks/latency.py --only turns|concurrency|soak [--soak-seconds 300]

- `ratio_vs_llamacpp`: Eterna's default serving path (its backend's generate: chat template, our decoding loop)
  vs raw llama-cpp-python (`Llama.create_completion`) on the same GGUF, prompts, greedy, 64 tokens.
- `turn_latency`: full turns (guard, route, retrieve, generate a reply of up to 64 tokens) on the world's
  non-fact router lines, for the default backend and for transformers (bf16) as the baseline: p50, p95.
- `ttft`: time to the first streamed text of those turns (the output guard streams whole sentences).
- `long_session_latency`: turns late in one long session per character (the rolling summary in the prompt), with
  the prompt cache kept for the system prompt's head (the default) and for the whole system turn.
- `adapters_concurrency`: 8 sessions on 8 different LoRA adapters in 8 threads vs one session alone, and vs the
  same load with no adapters, on the `batched` backend and on llama.cpp.
- `soak`: `eterna serve`'s app on loopback, N clients for a bounded time: status codes, lost turns, and the
  process's current RSS sampled every second (its slope after the first quarter, MB per minute), in all and its
  anonymous part (the heaps; the rest is file pages of the mapped models, which the kernel can drop).

Writes only under a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.config import EternaConfig  # noqa: E402
from app.runtime import Decoding  # noqa: E402

PROMPTS = ["Describe the docks at the change of shift.", "Who are you, and what is your work here?",
           "Tell me a short story about a lost cargo pod.", "What should a newcomer never do on the station?",
           "Greet a new arrival.", "What do you do when the lights fail?", "Tell me about your day.",
           "What is the best food aboard?"]


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def ratio_vs_llamacpp(backend, n: int) -> None:
    from llama_cpp import Llama

    raw = Llama(model_path=str(backend.gguf), n_ctx=2048, n_threads=os.cpu_count(), n_threads_batch=os.cpu_count(),
                verbose=False)
    dec = Decoding(max_new_tokens=64)
    ours, theirs = [], []
    for i, p in enumerate(PROMPTS[:n]):
        msgs = [{"role": "system", "content": f"You are a station hand (#{i})."}, {"role": "user", "content": p}]
        prompt = backend.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        t0 = time.perf_counter()
        out = raw.create_completion(prompt, max_tokens=64, temperature=0.0, repeat_penalty=1.0)
        dt = time.perf_counter() - t0
        theirs.append((out["usage"]["prompt_tokens"] + out["usage"]["completion_tokens"]) / dt)
        t0 = time.perf_counter()
        g = backend.generate(msgs, dec)
        dt = time.perf_counter() - t0
        ours.append((g.prompt_tokens + g.new_tokens) / dt)
    raw.close()
    emit({"figure": "ratio_vs_llamacpp", "eterna_tok_s_p50": round(statistics.median(ours), 1),
          "llamacpp_tok_s_p50": round(statistics.median(theirs), 1),
          "ratio_vs_llamacpp": round(statistics.median(ours) / statistics.median(theirs), 3),
          "note": "tokens/s counting prompt and reply, greedy, 64 new tokens, same GGUF, one at a time", "n": n})


def turns(engine, lines: list[dict], label: str) -> None:
    from app.dialogue import Reply

    engine.say(lines[0]["npc"], "warm up", session="warm")
    total, ttft, per_s, routes = [], [], [], {}
    for i, it in enumerate(lines):
        t0 = time.perf_counter()
        first = None
        for item in engine.stream(it["npc"], it["text"], session=f"lat-{label}-{i}"):
            if first is None:
                first = time.perf_counter() - t0
            if isinstance(item, Reply):
                reply = item
        total.append(time.perf_counter() - t0)
        routes[reply.route] = routes.get(reply.route, 0) + 1
        if reply.tokens.get("reply") and reply.route not in ("fact", "both"):
            ttft.append(first)  # free replies stream sentence by sentence; grounded ones wait for their check
        if reply.tokens.get("per_second"):
            per_s.append(reply.tokens["per_second"])
    emit({"figure": "turn_latency", "backend": label, "p50_turn_s": round(pct(total, 0.5), 3),
          "p95_turn_s": round(pct(total, 0.95), 3), "ttft_ms_p50": round(1000 * pct(ttft, 0.5), 1) if ttft else None,
          "ttft_ms_p95": round(1000 * pct(ttft, 0.95), 1) if ttft else None, "ttft_turns": len(ttft),
          "routes": routes,
          "reply_tok_s_p50": round(statistics.median(per_s), 1) if per_s else None, "turns": len(lines),
          "note": "non-fact lines of the world's router set, fresh sessions, max 64 new tokens"})


def long_sessions(engine, lines: list[dict], n_turns: int = 12) -> None:
    """Turn latency late in long sessions, one per character, taking turns: the rolling summary of older turns is
    in the system turn and changes every turn. The prompt cache kept for the system turn's head
    (`Decoding.cache_prefix`, the default) against one kept for the whole system turn (the hint removed), same
    texts, same run."""
    from dataclasses import replace

    backend = engine.generator
    if not hasattr(backend, "_prefixes"):
        return
    npcs = list(dict.fromkeys(it["npc"] for it in lines))
    after = engine.memory.turns  # from this turn on, older turns are summarised into the system turn
    said = {npc: [it["text"] for it in lines if it["npc"] == npc] + PROMPTS for npc in npcs}
    out = {}
    orig = backend.stream
    for label, hint in (("head", True), ("whole_system_turn", False)):
        backend._prefixes.clear()
        backend.cache_stats.update(prefix_hits=0, prefix_saves=0)
        if not hint:
            backend.stream = lambda m, cfg, adapter=None: orig(m, replace(cfg, cache_prefix=""), adapter)
        late = []
        try:
            for i in range(n_turns):  # the sessions take turns, as players do on a server
                for npc in npcs:
                    t0 = time.perf_counter()
                    reply = engine.say(npc, said[npc][i % len(said[npc])], session=f"long-{label}-{npc}")
                    if i >= after and reply.tokens.get("reply"):
                        late.append(time.perf_counter() - t0)
        finally:
            backend.stream = orig
        out[label] = {"p50_turn_s": round(pct(late, 0.5), 3), "p95_turn_s": round(pct(late, 0.95), 3),
                      "turns": len(late), **backend.cache_stats}
    emit({"figure": "long_session_latency", "sessions": len(npcs), "turns_each": n_turns, **out,
          "speedup_p50": round(out["whole_system_turn"]["p50_turn_s"] / out["head"]["p50_turn_s"], 2),
          "note": f"generated turns after the first {after} of each session (the summary is in the prompt)"})


def random_adapters(model_dir: Path, tmp: Path, n_adapters: int) -> list[Path]:
    """`n_adapters` LoRA adapters (r=8 on q_proj and v_proj, random B) saved with a manifest naming the base."""
    import torch
    from peft import LoraConfig, get_peft_model

    from tuning.base import load_base, model_fingerprint

    model, _ = load_base(model_dir, "float32")
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                            task_type="CAUSAL_LM"))
    out = []
    for k in range(n_adapters):
        g = torch.Generator().manual_seed(k)
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.data = torch.randn(p.shape, generator=g) * 0.01
        path = tmp / f"npc{k}"
        peft.save_pretrained(path)
        (path / "eterna_adapter.json").write_text(json.dumps({"base": {"fingerprint": model_fingerprint(model_dir)}}))
        out.append(path)
    return out


def concurrency(backend, adapters: list[Path]) -> None:
    """Aggregate tokens/s of len(adapters) sessions in as many threads, each on its own adapter, against one session
    alone and against the same load with no adapters, on `backend`."""
    for k, path in enumerate(adapters):
        backend.add_adapter(f"npc{k}", path)
    dec = Decoding(max_new_tokens=32)

    stats = getattr(backend, "stats", None)

    def step_ms() -> float | None:  # batched backend: mean time of one decoding step of the whole batch
        return 1000 * stats["decode_s"] / stats["steps"] if stats and stats.get("steps") else None

    def run(names: list[str | None]) -> float:
        done = []
        if stats:
            stats.update(steps=0, decode_s=0.0)

        def one(k, a):
            g = backend.generate([{"role": "user", "content": PROMPTS[k % len(PROMPTS)]}], dec, adapter=a)
            done.append(g.new_tokens)
        threads = [threading.Thread(target=one, args=(k, a)) for k, a in enumerate(names)]
        t0 = time.perf_counter()
        [t.start() for t in threads]
        [t.join() for t in threads]
        return sum(done) / (time.perf_counter() - t0)

    run(["npc0"])  # warm-up (first-call allocations)
    n = len(adapters)
    single = statistics.median(run(["npc0"]) for _ in range(3))
    single_step = step_ms()
    mixed = statistics.median(run([f"npc{k}" for k in range(n)]) for _ in range(3))
    mixed_step = step_ms()
    plain = statistics.median(run([None] * n) for _ in range(3))
    plain_step = step_ms()
    steps = {}
    if mixed_step:
        steps = {"step_ms_single": round(single_step, 1), "step_ms_mixed": round(mixed_step, 1),
                 "step_ms_no_adapters": round(plain_step, 1),
                 "mixed_vs_no_adapters_per_step": round(plain_step / mixed_step, 2)}
    note = {"llamacpp": "llama.cpp serves one sequence at a time per model (the adapter is context state)",
            "batched": "one batch, each row its own LoRA (gathered low-rank matrices, two bmm per adapted layer)"}
    emit({"figure": "adapters_concurrency", "backend": backend.name, "sessions": n, "single_tok_s": round(single, 1),
          "mixed_adapters_tok_s": round(mixed, 1), "no_adapters_tok_s": round(plain, 1),
          "aggregate_vs_single": round(mixed / single, 2), "mixed_vs_no_adapters": round(mixed / plain, 2), **steps,
          "goal": "aggregate_vs_single >= 3, mixed_vs_no_adapters >= 0.8", "note": note.get(backend.name, ""),
          "median_of": 3})


def soak(engine, seconds: float, clients: int) -> dict:
    """N clients against the server app for `seconds`; prints the figure and returns it (the CI soak test checks it)."""
    import httpx

    from app.server import create_app
    from tests.app.test_server import Server  # the same loopback harness the tests use

    statuses: dict[int, int] = {}
    ok_turns: dict[str, int] = {}
    lock = threading.Lock()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    samples: list[tuple[float, float]] = []  # (seconds since start, current RSS in MB)
    anon: list[tuple[float, float]] = []  # (seconds, anonymous RSS in MB: the heap, not file pages of the models)
    with Server(create_app(engine, queue=max(2, clients // 2))) as url:
        start = time.time()
        stop = start + seconds

        def sampler():
            while time.time() < stop:
                with open("/proc/self/status") as f:
                    kb = {k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in f) if k in ("VmRSS", "RssAnon")}
                t = time.time() - start
                samples.append((t, kb["VmRSS"] / 1024))
                anon.append((t, kb["RssAnon"] / 1024))
                time.sleep(1.0)
        threading.Thread(target=sampler, daemon=True).start()

        def client(c):
            with httpx.Client(timeout=60) as h:
                i = 0
                while time.time() < stop:
                    r = h.post(f"{url}/v1/npcs/{engine.cast.npcs[c % len(engine.cast.npcs)].id}/say",
                               json={"text": f"{PROMPTS[i % len(PROMPTS)]} ({c}/{i})", "session": f"soak{c}"})
                    with lock:
                        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                        if r.status_code == 200:
                            ok_turns[f"soak{c}"] = ok_turns.get(f"soak{c}", 0) + 1
                    if r.status_code == 429:
                        time.sleep(0.2)
                    i += 1
        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        [t.start() for t in threads]
        [t.join() for t in threads]
    # every answered turn is in its session's file exactly once, and no session holds another client's line
    lost = foreign = None
    if engine.memory.store is not None:
        lost = foreign = 0
        for s, n in ok_turns.items():
            path = engine.memory.store / f"{s}.jsonl"
            recs = [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []
            lost += abs(n - len(recs))
            foreign += sum(re.search(rf"\({s[4:]}/\d+\)$", r["user"]) is None for r in recs)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def slope(xs):  # MB per minute after the warm-up quarter
        late = [(t, m) for t, m in xs if t >= seconds / 4]
        if len(late) < 3:
            return None
        import numpy as np

        return round(float(np.polyfit([t for t, _ in late], [m for _, m in late], 1)[0]) * 60, 2)

    def quarters(xs):
        return [round(next((m for t, m in xs if t >= q * seconds / 4), xs[-1][1])) for q in (1, 2, 3)] + \
            [round(xs[-1][1])] if xs else None

    late = [(t, m) for t, m in samples if t >= seconds / 4]
    fig = {"figure": "soak", "clients": clients, "seconds": seconds, "statuses": statuses,
           "errors_5xx": sum(n for c, n in statuses.items() if c >= 500), "lost_turns": lost,
           "foreign_turns": foreign,
           "max_rss_mb_before": round(rss0 / 1024), "max_rss_mb_after": round(rss1 / 1024),
           "rss_mb_after_warmup": round(late[0][1]) if late else None,
           "rss_mb_end": round(late[-1][1]) if late else None,
           "rss_slope_mb_per_min_after_warmup": slope(samples), "samples": len(samples),
           "rss_mb_by_quarter": quarters(samples),
           "anon_rss_slope_mb_per_min_after_warmup": slope(anon), "anon_rss_mb_by_quarter": quarters(anon),
           "prefix_states": len(getattr(engine.generator, "_prefixes", ())) or None,
           "prefix_cache": dict(getattr(engine.generator, "cache_stats", {})) or None}
    emit(fig)
    return fig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer prompts and a shorter soak (a smoke run)")
    ap.add_argument("--config", default=str(REPO / "configs" / "kestrel.yaml"))
    ap.add_argument("--only", choices=["turns", "concurrency", "soak"], help="run one figure only")
    ap.add_argument("--soak-seconds", type=float, help="length of the soak (default 30, --quick 5)")
    args = ap.parse_args()
    from app.dialogue import DialogueEngine
    from retrieval.fileio import read_jsonl

    n = 3 if args.quick else 8
    shipped = EternaConfig.load(Path(args.config))
    lines = [it for _, it in read_jsonl(shipped.data_path("eval") / "router.jsonl") if it["label"] != "fact"]
    lines = lines[: (6 if args.quick else 30)]
    if args.only == "concurrency":
        with tempfile.TemporaryDirectory() as tmp:
            concurrency_figures(shipped, Path(tmp), 4 if args.quick else 8)
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gen = shipped.generation.model_copy(update={"max_new_tokens": 64})
        cfg = shipped.model_copy(update={"generation": gen, "paths": shipped.paths.model_copy(
            update={"sessions": tmp / "sessions"})})
        engine = DialogueEngine.from_settings(cfg)
        if args.only != "soak":
            if engine.generator.name == "llamacpp":
                ratio_vs_llamacpp(engine.generator, n)
            turns(engine, lines, engine.generator.name)
            long_sessions(engine, lines, 8 if args.quick else 12)
            if args.only == "turns":
                return
        soak(engine, args.soak_seconds or (5 if args.quick else 30), 4 if args.quick else 8)
        if args.only == "soak":
            return
        base = DialogueEngine.from_settings(cfg.model_copy(update={"models": cfg.models.model_copy(
            update={"backend": "transformers"})}))
        turns(base, lines, "transformers")
        del base, engine
        concurrency_figures(cfg, tmp, 4 if args.quick else 8)


def concurrency_figures(cfg: EternaConfig, tmp: Path, n: int) -> None:
    """The concurrency figure on the llama.cpp backend (when installed) and on the batched backend."""
    from app.dialogue import build_backend

    cfg = cfg.model_copy(update={"models": cfg.models.model_copy(update={"backend": "batched"})})
    batched = build_backend(cfg)
    adapters = random_adapters(batched.model_dir, tmp, n)
    concurrency(batched, adapters)
    del batched
    from app.llamacpp import available

    if available():
        concurrency(build_backend(cfg.model_copy(update={"models": cfg.models.model_copy(
            update={"backend": "llamacpp"})})), adapters)


if __name__ == "__main__":
    main()
