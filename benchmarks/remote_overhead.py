"""Overhead of the `openai` backend over the in-process llama.cpp backend, measured side by side in one run.

    .venv/bin/python benchmarks/remote_overhead.py [--turns 20] [--npc archivist] [--config configs/eterna.yaml]

The same world, character, lines and decoding on both engines; generation goes to llama-cpp-python's own server
(`python -m llama_cpp.server`, loopback, the same GGUF and the character's adapter as a GGUF LoRA under its alias)
for the `openai` engine, and stays in the process for the baseline. Eterna-only decoding is off on both (no n-gram
ban, no repetition penalty), so both generate the same tokens; turns alternate between the engines, fresh
sessions, the world's non-fact router lines of that character (the ones that generate). Prints one JSON object:
p50/p95 turn for each, the ratio of the p50s (goal <= 1.15), and how many replies were identical. Mixed-character
traffic is not measured: llama_cpp.server serves one adapter per process. Writes under a temporary directory
and the model cache (models.cache_dir: the prepared base, the adapter's GGUF LoRA).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(gguf: Path, alias: str, lora: Path | None, threads: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    args = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias, "--host",
            "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads), "--verbose", "False",
            "--interrupt_requests", "False"]
    if lora is not None:
        args += ["--lora_path", str(lora)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("llama_cpp.server died at start")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("llama_cpp.server did not start in 120 s")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "configs" / "eterna.yaml"))
    ap.add_argument("--npc", default="archivist")
    ap.add_argument("--turns", type=int, default=20, help="measured turns per engine")
    args = ap.parse_args()

    from app.config import Cast, EternaConfig, RemoteConfig
    from app.dialogue import DialogueEngine
    from app.backends.llamacpp import cpu_threads
    from retrieval.embeddings import SentenceTransformerEmbedder
    from retrieval.fileio import read_jsonl
    from retrieval.rebuild import rebuild_index
    from tuning.base import model_gguf, prepare_model
    from tuning.export import cached_gguf_lora

    shipped = EternaConfig.load(Path(args.config))
    npc = Cast.load(shipped.paths.npcs, shipped.world).get(args.npc)
    lines = [it["text"] for _, it in read_jsonl(shipped.data_path("eval") / "router.jsonl")
             if it["label"] != "fact"]
    lines = (lines * (1 + args.turns // max(1, len(lines))))[: args.turns]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gen = shipped.generation.model_copy(update={"max_new_tokens": 64, "no_repeat_ngram": 0,
                                                    "repetition_penalty": 1.0})
        cfg = shipped.model_copy(update={"generation": gen, "paths": shipped.paths.model_copy(
            update={"sessions": None, "index": tmp / "index"})})
        rebuild_index(cfg.paths.corpus, cfg.paths.index,
                      SentenceTransformerEmbedder(cfg.models.embedder, dtype=cfg.models.embedder_dtype),
                      kinds=cfg.world.kinds)
        model_dir = prepare_model(cfg.models.llm, cfg.models.cache_dir)
        gguf = model_gguf(cfg.models.llm, cfg.models.llamacpp.gguf)
        lora = cached_gguf_lora(npc.adapter, model_dir, cfg.models.cache_dir / "gguf-lora") if npc.adapter else None
        proc, url = start_server(gguf, args.npc, lora, cpu_threads())
        try:
            local = DialogueEngine.from_settings(cfg.model_copy(update={"models": cfg.models.model_copy(
                update={"backend": "llamacpp"})}))
            # every character with an adapter must be mapped; only `npc` speaks here, so all name its alias
            cast = Cast.load(cfg.paths.npcs, cfg.world)
            remote_cfg = RemoteConfig(base_url=url, model=args.npc,
                                      adapters={n.id: args.npc for n in cast.npcs if n.adapter is not None})
            remote = DialogueEngine.from_settings(cfg.model_copy(update={"models": cfg.models.model_copy(
                update={"backend": "openai", "remote": remote_cfg})}))
            times: dict[str, list[float]] = {"llamacpp": [], "openai": []}
            same, generated = 0, 0
            for engine in (local, remote):  # warm-up: the system-prompt states, the server's first load
                for text in lines[:2]:
                    engine.say(args.npc, text, session="warm", remember=False)
            for i, text in enumerate(lines):
                order = [("llamacpp", local), ("openai", remote)]
                replies = {}
                for label, engine in (order if i % 2 == 0 else order[::-1]):
                    t0 = time.perf_counter()
                    reply = engine.say(args.npc, text, session=f"o-{label}-{i}", remember=False)
                    times[label].append(time.perf_counter() - t0)
                    replies[label] = reply
                generated += replies["openai"].tokens.get("reply", 0) > 0
                same += replies["llamacpp"].text == replies["openai"].text
        finally:
            proc.kill()
            proc.wait(10)
    p50 = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "figure": "remote_overhead", "traffic": "single-character", "npc": args.npc, "turns": len(lines),
        "server": "llama_cpp.server (loopback), same GGUF and adapter", "threads": cpu_threads(),
        "p50_turn_s": {k: round(v, 3) for k, v in p50.items()},
        "p95_turn_s": {k: round(pct(v, 0.95), 3) for k, v in times.items()},
        "ratio_p50": round(p50["openai"] / p50["llamacpp"], 3), "goal": "<= 1.15",
        "identical_replies": same, "turns_that_generated": generated,
        "note": "turns alternate between the engines; fresh sessions; greedy, 64 new tokens, no n-gram ban, no "
                "repetition penalty on both"}))


if __name__ == "__main__":
    main()
