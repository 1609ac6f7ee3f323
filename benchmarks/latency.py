"""Serving latency and throughput, measured side by side in one run. One JSON object per figure on stdout.

    .venv/bin/python benchmarks/latency.py [--quick] [--config configs/kestrel.yaml]
    .venv/bin/python benchmarks/latency.py --only turns|concurrency|soak [--soak-seconds 300]

- `ratio_vs_llamacpp`: Eterna's default serving path (its backend's generate: chat template, our decoding loop)
  vs raw llama-cpp-python (`Llama.create_completion`) on the same GGUF, prompts, greedy, 64 tokens.
- `turn_latency`: full turns (guard, route, retrieve, generate a reply of up to 64 tokens) on the world's
  non-fact router lines, for the default backend and for transformers (bf16) as the baseline: p50, p95.
- `ttft`: time to the first streamed text of those turns (the output guard streams whole sentences).
- `long_session_latency`: turns late in one long session per character, the sessions taking turns: the default
  (each conversation's prompt state kept, older exchanges summarised a few at a time) against the head cache
  alone with the window sliding every turn (before 2026-11-30's second change).
- `adapters_concurrency`: 8 sessions on 8 different LoRA adapters in 8 threads vs one session alone, and vs the
  same load with no adapters, on the `batched` backend and on llama.cpp.
- `soak`: `eterna serve` in its own process on loopback after a warm-up (every character meets every line once),
  N clients for a bounded time, each starting a new session every `--soak-rotate` turns: status codes, lost and
  foreign turns, and the server's current RSS sampled every second (its slope after the first quarter, MB per
  minute): in all, its anonymous and file-backed parts, and outside the bounded prompt caches (their size from
  `/healthz`), with the mappings that grew most after the warm-up quarter.

Writes only under a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
from app.backends.decoding import Decoding  # noqa: E402
from retrieval.fileio import read_jsonl  # noqa: E402

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
    """Both sides on the same build and the same configuration the startup probe chose (extra buffer types)."""
    from llama_cpp import Llama

    from app.probe import cpu_info, llama_build, model_params

    threads = len(os.sched_getaffinity(0))
    with model_params(extra_bufts=backend.extra_bufts):
        raw = Llama(model_path=str(backend.gguf), n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                    verbose=False)
    dec = Decoding(max_new_tokens=64)
    ours, theirs, ours_dec, theirs_dec = [], [], [], []
    for i, p in enumerate(PROMPTS[:n]):
        msgs = [{"role": "system", "content": f"You are a station hand (#{i})."}, {"role": "user", "content": p}]
        prompt = backend.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
        t0, first, n_new = time.perf_counter(), None, 0
        for chunk in raw.create_completion(prompt, max_tokens=64, temperature=0.0, repeat_penalty=1.0, stream=True):
            first = first or time.perf_counter()
            n_new += 1
        end = time.perf_counter()
        n_prompt = len(raw.tokenize(prompt.encode(), special=True))
        theirs.append((n_prompt + n_new) / (end - t0))
        if n_new > 1:
            theirs_dec.append((n_new - 1) / (end - first))
        t0, first = time.perf_counter(), None
        for item in backend.stream(msgs, dec):
            first = first or time.perf_counter()
            g = item
        end = time.perf_counter()
        ours.append((g.prompt_tokens + g.new_tokens) / (end - t0))
        if g.new_tokens > 1:
            ours_dec.append((g.new_tokens - 1) / (end - first))
    raw.close()
    flags = cpu_info()["flags"]
    emit({"figure": "ratio_vs_llamacpp", "eterna_tok_s_p50": round(statistics.median(ours), 1),
          "llamacpp_tok_s_p50": round(statistics.median(theirs), 1),
          "ratio_vs_llamacpp": round(statistics.median(ours) / statistics.median(theirs), 3),
          "eterna_decode_tok_s_p50": round(statistics.median(ours_dec), 1) if ours_dec else None,
          "llamacpp_decode_tok_s_p50": round(statistics.median(theirs_dec), 1) if theirs_dec else None,
          "extra_bufts": backend.extra_bufts, "cpu_amx": flags["amx_tile"], "cpu_avx512f": flags["avx512f"],
          "build": (llama_build().get("build") or {}).get("cmake_args"),
          "note": "tokens/s counting prompt and reply, greedy, 64 new tokens, same GGUF, same build and "
                  "configuration, one at a time; decode = reply tokens after the first / time after the first",
          "n": n})


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
    """Turn latency late in long sessions, one per character, taking turns as players do on a server. The default
    (each conversation's prompt state kept after its turn, older exchanges summarised 3 at a time so the prompt's
    start stays put) against the way before it (only the system prompt's head kept, the window sliding every
    turn), same texts, same run."""
    backend = engine.generator
    if not hasattr(backend, "_states"):
        return
    npcs = list(dict.fromkeys(it["npc"] for it in lines))
    after = engine.memory.turns  # from this turn on, older turns are summarised into the system turn
    said = {npc: [it["text"] for it in lines if it["npc"] == npc] + PROMPTS for npc in npcs}
    out = {}
    budget, every = backend.state_cache_bytes, engine.memory.summarise_every
    for label, states, chunk in (("default", budget, every), ("head_cache_only", 0, 1)):
        backend._prefixes.clear()
        backend._states.clear()
        backend.cache_stats.update(prefix_hits=0, prefix_saves=0, state_hits=0, state_saves=0)
        backend.state_cache_bytes, engine.memory.summarise_every = states, chunk
        late = []
        try:
            for i in range(n_turns):
                for npc in npcs:
                    t0 = time.perf_counter()
                    reply = engine.say(npc, said[npc][i % len(said[npc])], session=f"long-{label}-{npc}")
                    if i >= after and reply.tokens.get("reply"):
                        late.append(time.perf_counter() - t0)
        finally:
            backend.state_cache_bytes, engine.memory.summarise_every = budget, every
        out[label] = {"p50_turn_s": round(pct(late, 0.5), 3), "p95_turn_s": round(pct(late, 0.95), 3),
                      "turns": len(late), **backend.cache_stats}
    emit({"figure": "long_session_latency", "sessions": len(npcs), "turns_each": n_turns,
          "state_cache_mb": round(budget / 2**20), "summarise_every": every, **out,
          "speedup_p50": round(out["head_cache_only"]["p50_turn_s"] / out["default"]["p50_turn_s"], 2),
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


def _status_kb(pid: int | str = "self") -> dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        return {k: int(v.split()[0]) for k, v in (ln.split(":", 1) for ln in f) if k in ("VmRSS", "RssAnon", "RssFile")}


def _smaps(pid: int | str = "self") -> dict[str, int]:
    """Resident KB by mapping name (a file, [heap], [stack], or [anon] for nameless ones), to attribute growth."""
    out: dict[str, int] = {}
    name = "[anon]"
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                name = parts[5] if len(parts) > 5 else "[anon]"
            elif line.startswith("Rss:"):
                out[name] = out.get(name, 0) + int(line.split()[1])
    return out


def _cache_mb(report: dict | None) -> float | None:
    return None if not report else report["prefix_mb"] + report["conversation_mb"]


def _load(url: str, npcs: list[str], seconds: float, clients: int, sessions: Path | None, pid: int | str,
          rotate: int, cache, turns: int | None = None) -> dict:
    """N clients saying lines for `seconds` (client c's session changes every `rotate` turns: players come and go);
    with `turns`, each client says that many lines instead, a refused one (429) again until it is answered, however
    long that takes. The target process's RSS and its backend's prompt-cache report (`cache()`) sampled every second;
    then every answered turn is looked up in its session file."""
    import httpx
    import numpy as np

    statuses: dict[int, int] = {}
    ok_turns: dict[str, int] = {}
    lock = threading.Lock()
    samples: list[tuple[float, dict]] = []  # (seconds since start, /proc status KB)
    maps: dict[str, dict] = {}
    start = time.time()
    stop = start + seconds if turns is None else float("inf")
    finished = threading.Event()

    def sampler():
        while not finished.is_set():
            t = time.time() - start
            kb = _status_kb(pid)
            try:
                held = _cache_mb(cache())
            except Exception:  # a slow health check: this sample has no cache figure
                held = None
            if held is not None:  # RSS outside the bounded prompt caches
                kb["Outside"] = kb["VmRSS"] - int(held * 1024)
            samples.append((t, kb))
            if "warm" not in maps and t >= seconds / 4:
                maps["warm"] = _smaps(pid)
            finished.wait(1.0)
        maps["end"] = _smaps(pid)
    sampling = threading.Thread(target=sampler, daemon=True)
    sampling.start()

    def client(c):
        with httpx.Client(timeout=60) as h:
            i = 0
            while time.time() < stop and (turns is None or i < turns):
                session = f"soak{c}-{i // rotate}" if rotate else f"soak{c}"
                r = h.post(f"{url}/v1/npcs/{npcs[c % len(npcs)]}/say",
                           json={"text": f"{PROMPTS[i % len(PROMPTS)]} ({c}/{i})", "session": session})
                with lock:
                    statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                    if r.status_code == 200:
                        ok_turns[session] = ok_turns.get(session, 0) + 1
                if r.status_code == 429:
                    time.sleep(0.2)
                    if turns is not None:
                        continue  # the same line again
                i += 1
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    if turns is not None:
        seconds = time.time() - start
    finished.set()
    sampling.join(5)
    # every answered turn is in its session's file exactly once, and no session holds another client's line
    lost = foreign = None
    if sessions is not None:
        lost = foreign = 0
        for s, n in ok_turns.items():
            path = sessions / f"{s}.jsonl"
            recs = [r for _, r in read_jsonl(path)] if path.is_file() else []
            lost += abs(n - len(recs))
            c = s[4:].split("-")[0]
            foreign += sum(re.search(rf"\({c}/\d+\)$", r["user"]) is None for r in recs)

    def series(key):
        return [(t, kb[key] / 1024) for t, kb in samples if key in kb]

    def slope(xs):  # MB per minute after the warm-up quarter
        late = [(t, m) for t, m in xs if t >= seconds / 4]
        return round(float(np.polyfit([t for t, _ in late], [m for _, m in late], 1)[0]) * 60, 2) \
            if len(late) >= 3 else None

    def quarters(xs):
        return [round(next((m for t, m in xs if t >= q * seconds / 4), xs[-1][1])) for q in (1, 2, 3)] + \
            [round(xs[-1][1])] if xs else None

    rss, anon, files, outside = series("VmRSS"), series("RssAnon"), series("RssFile"), series("Outside")
    warm, end = maps.get("warm", {}), maps.get("end", {})
    growth = sorted(((end.get(k, 0) - warm.get(k, 0), k) for k in set(warm) | set(end)), reverse=True)
    return {"clients": clients, "seconds": round(seconds, 1), "turns_per_client": turns,
            "sessions_rotate_every": rotate or None,
            "sessions_used": len(ok_turns), "statuses": statuses,
            "errors_5xx": sum(n for c, n in statuses.items() if c >= 500), "lost_turns": lost,
            "foreign_turns": foreign, "samples": len(samples),
            "rss_mb_by_quarter": quarters(rss), "rss_slope_mb_per_min_after_warmup": slope(rss),
            "anon_rss_mb_by_quarter": quarters(anon), "anon_rss_slope_mb_per_min_after_warmup": slope(anon),
            "file_rss_mb_by_quarter": quarters(files), "file_rss_slope_mb_per_min_after_warmup": slope(files),
            "rss_outside_caches_mb_by_quarter": quarters(outside),
            "rss_outside_caches_slope_mb_per_min_after_warmup": slope(outside), "cache_at_end": cache(),
            "rss_growth_after_warmup_kb": {k: kb for kb, k in growth[:6] if kb > 0}}


def soak(engine, seconds: float, clients: int, rotate: int = 0, turns: int | None = None) -> dict:
    """In process: the server app on loopback in this process (the CI soak test, with `turns`: a fixed number of
    answered lines per client, not a time); prints the figure, returns it."""
    from app.server import create_app
    from tests.app.test_server import Server  # the same loopback harness the tests use

    with Server(create_app(engine, queue=max(2, clients // 2))) as url:
        fig = {"figure": "soak", "server": "in process",
               **_load(url, [n.id for n in engine.cast.npcs], seconds, clients, engine.memory.store, "self", rotate,
                       getattr(engine.generator, "cache_report", lambda: None), turns)}
    emit(fig)
    return fig


def soak_served(cfg: EternaConfig, tmp: Path, seconds: float, clients: int, rotate: int) -> dict:
    """`eterna serve` as its own process on loopback; its RSS alone is sampled (the clients live in this process)."""
    import subprocess

    import httpx
    import yaml

    from tests.app.test_server import _free_port

    config = tmp / "served.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
    port = _free_port()
    queue = max(2, clients // 2)
    proc = subprocess.Popen([sys.executable, "-m", "app.cli", "--config", str(config), "serve", "--port", str(port),
                             "--queue", str(queue)], cwd=REPO, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"eterna serve exited {proc.returncode}: {proc.stderr.read()[-2000:]}")
            try:
                health = httpx.get(f"{url}/healthz", timeout=2).json()
                break
            except httpx.HTTPError:
                if time.time() > deadline:
                    raise SystemExit("eterna serve did not answer /healthz within 300 s")
                time.sleep(0.5)
        npcs = [n["id"] for n in httpx.get(f"{url}/v1/npcs", timeout=10).json()["npcs"]]
        for npc in npcs:  # warm-up: every character meets every line once, so its prompt states are made
            for line in PROMPTS:
                httpx.post(f"{url}/v1/npcs/{npc}/say", json={"text": line, "session": "warmup"}, timeout=120)
        fig = {"figure": "soak", "server": "eterna serve (own process)", "backend": health.get("backend"),
               "malloc_arena_max": os.environ.get("MALLOC_ARENA_MAX"), "warmup_turns": len(npcs) * len(PROMPTS),
               "rss_mb_after_warmup": round(_status_kb(proc.pid)["VmRSS"] / 1024),
               **_load(url, npcs, seconds, clients, cfg.paths.sessions, proc.pid, rotate,
                       lambda: httpx.get(f"{url}/healthz", timeout=10).json().get("cache"))}
    finally:
        proc.terminate()
        proc.wait(30)
    emit(fig)
    return fig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer prompts and a shorter soak (a smoke run)")
    ap.add_argument("--config", default=str(REPO / "configs" / "kestrel.yaml"))
    ap.add_argument("--only", choices=["turns", "concurrency", "soak"], help="run one figure only")
    ap.add_argument("--soak-seconds", type=float, help="length of the soak (default 30, --quick 5)")
    ap.add_argument("--soak-rotate", type=int, default=20,
                    help="each client starts a new session every N turns (players come and go; 0: one each)")
    args = ap.parse_args()
    from app.dialogue import DialogueEngine

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
        if args.only == "soak":  # the server loads its own engine
            soak_served(cfg, tmp, args.soak_seconds or 30, 8, args.soak_rotate)
            return
        engine = DialogueEngine.from_settings(cfg)
        if engine.generator.name == "llamacpp":
            ratio_vs_llamacpp(engine.generator, n)
        turns(engine, lines, engine.generator.name)
        long_sessions(engine, lines, 8 if args.quick else 12)
        if args.only == "turns":
            return
        soak(engine, args.soak_seconds or (5 if args.quick else 30), 4 if args.quick else 8, args.soak_rotate)
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
    from app.backends.llamacpp import available

    if available():
        concurrency(build_backend(cfg.model_copy(update={"models": cfg.models.model_copy(
            update={"backend": "llamacpp"})})), adapters)


if __name__ == "__main__":
    main()
