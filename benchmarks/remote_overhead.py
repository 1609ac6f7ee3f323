"""Overhead of the `openai` backend over the in-process llama.cpp backend, measured side by side in one run.

    .venv/bin/python benchmarks/remote_overhead.py [--turns 20] [--npc archivist] [--config configs/eterna.yaml]
        [--traffic single|mixed|both]

The same world, character, lines and decoding on both engines; generation goes to llama-cpp-python's own server
(`python -m llama_cpp.server`, loopback, the same GGUF and the character's adapter as a GGUF LoRA under its alias)
for the `openai` engine, and stays in the process for the baseline. Eterna-only decoding is off on both (no n-gram
ban, no repetition penalty), so both generate the same tokens; turns alternate between the engines, fresh
sessions, the world's non-fact router lines (the ones that generate), all said to that character. Prints one JSON line
per traffic: p50/p95 turn for each, the ratio of the p50s (goal <= 1.15), and how many replies were identical.

`--traffic mixed` (no goal): turns go to every character with an adapter in turn, the world's non-fact router lines
of each. llama_cpp.server serves one adapter per process (its `--config_file` multi-model mode closes and reloads
the model whenever the requested alias changes: llama_cpp/server/model.py, LlamaProxy.__call__), so each character
gets its own server process, behind a small loopback router that sends each request to the process serving its
`model` (what a vLLM or SGLang pool does in one process); the in-process baseline switches LoRAs per turn.
Writes under a temporary directory and the model cache (models.cache_dir: the prepared base, the GGUF LoRAs).
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
import threading
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


class ModelRouter:
    """A loopback HTTP router in front of one llama_cpp.server per alias: a request goes to the process that serves
    its JSON body's `model`, the answer (streamed or not) is piped back as it comes."""

    def __init__(self, upstreams: dict[str, str]):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        import httpx

        local = threading.local()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection closes: streams pass through as-is

            def log_message(self, *a):
                pass

            def _pipe(self, method: str, body: bytes | None) -> None:
                model = json.loads(body).get("model") if body else None
                base = upstreams.get(model) or next(iter(upstreams.values()))
                if not hasattr(local, "http"):
                    local.http = httpx.Client(timeout=600)  # one connection pool per handler thread
                http = local.http
                headers = {"content-type": self.headers.get("content-type", "application/json")}
                with http.stream(method, base + self.path.removeprefix("/v1"), content=body, headers=headers) as r:
                    self.send_response(r.status_code)
                    self.send_header("content-type", r.headers.get("content-type", "application/json"))
                    self.end_headers()
                    try:
                        for piece in r.iter_raw():
                            self.wfile.write(piece)
                            self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):
                        return  # the client stopped reading (a reply it ended early): close the upstream too

            def do_GET(self):
                self._pipe("GET", None)

            def do_POST(self):
                self._pipe("POST", self.rfile.read(int(self.headers.get("content-length", 0))))

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def side_by_side(local, remote, turns: list[tuple[str, str]]) -> dict:
    """The same (character, line) turns on both engines, alternating which goes first; fresh sessions."""
    times: dict[str, list[float]] = {"llamacpp": [], "openai": []}
    same, generated = 0, 0
    for engine in (local, remote):  # warm-up: the system-prompt states, each server's first load
        for npc, text in turns[: max(2, len({n for n, _ in turns}))]:
            engine.say(npc, text, session="warm", remember=False)
    for i, (npc, text) in enumerate(turns):
        order = [("llamacpp", local), ("openai", remote)]
        replies = {}
        for label, engine in (order if i % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            reply = engine.say(npc, text, session=f"o-{label}-{i}", remember=False)
            times[label].append(time.perf_counter() - t0)
            replies[label] = reply
        generated += replies["openai"].tokens.get("reply", 0) > 0
        same += replies["llamacpp"].text == replies["openai"].text
    p50 = {k: statistics.median(v) for k, v in times.items()}
    return {"turns": len(turns), "p50_turn_s": {k: round(v, 3) for k, v in p50.items()},
            "p95_turn_s": {k: round(pct(v, 0.95), 3) for k, v in times.items()},
            "ratio_p50": round(p50["openai"] / p50["llamacpp"], 3), "identical_replies": same,
            "turns_that_generated": generated}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default=str(REPO / "configs" / "eterna.yaml"))
    ap.add_argument("--npc", default="archivist", help="the character of single-character traffic")
    ap.add_argument("--turns", type=int, default=20, help="measured turns per engine and traffic")
    ap.add_argument("--traffic", choices=["single", "mixed", "both"], default="single")
    ap.add_argument("--mixed-turns", type=int, default=None, help="measured mixed turns per engine (default --turns)")
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
    cast = Cast.load(shipped.paths.npcs, shipped.world)
    voiced = [n.id for n in cast.npcs if n.adapter is not None]
    rows = [it for _, it in read_jsonl(shipped.data_path("eval") / "router.jsonl") if it["label"] != "fact"]

    def cycle(items: list, n: int) -> list:
        return (items * (1 + n // max(1, len(items))))[:n]

    single = cycle([(args.npc, it["text"]) for it in rows], args.turns)  # every non-fact line, to `npc`
    by_npc = {n: [it["text"] for it in rows if it["npc"] == n] or [it["text"] for it in rows] for n in voiced}
    mixed = []
    for i in range(args.mixed_turns or args.turns):  # the characters in turn, each with its own lines in order
        npc = voiced[i % len(voiced)]
        mixed.append((npc, by_npc[npc][(i // len(voiced)) % len(by_npc[npc])]))
    common = {"figure": "remote_overhead", "threads": cpu_threads(),
              "note": "turns alternate between the engines; fresh sessions; greedy, 64 new tokens, no n-gram ban, "
                      "no repetition penalty on both"}

    def report(traffic: str, started: list[float], figures: dict, goal: str | None) -> None:
        """One JSON line per traffic, as soon as it is measured."""
        print(json.dumps({**common, "traffic": traffic, "goal": goal, **figures, "load_average_at_start": started,
                          "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}), flush=True)

    servers: list[subprocess.Popen] = []
    router = None
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

        def lora(npc_id: str) -> Path | None:
            spec = cast.get(npc_id)
            return cached_gguf_lora(spec.adapter, model_dir, cfg.models.cache_dir / "gguf-lora") \
                if spec.adapter else None

        def remote_engine(url: str, model: str, adapters: dict[str, str]):
            remote_cfg = RemoteConfig(base_url=url, model=model, adapters=adapters)
            return DialogueEngine.from_settings(cfg.model_copy(update={"models": cfg.models.model_copy(
                update={"backend": "openai", "remote": remote_cfg})}))

        try:
            local = DialogueEngine.from_settings(cfg.model_copy(update={"models": cfg.models.model_copy(
                update={"backend": "llamacpp"})}))
            if args.traffic in ("single", "both"):
                started = [round(x, 2) for x in os.getloadavg()]
                proc, url = start_server(gguf, args.npc, lora(args.npc), cpu_threads())
                servers.append(proc)
                # every character with an adapter must be mapped; only `npc` speaks here, so all name its alias
                remote = remote_engine(url, args.npc, {n: args.npc for n in voiced})
                report("single-character", started, {
                    "npc": args.npc, "server": "llama_cpp.server (loopback), same GGUF and adapter",
                    **side_by_side(local, remote, single)}, "ratio_p50 <= 1.15")
                proc.kill()
                proc.wait(10)
            if args.traffic in ("mixed", "both"):
                started = [round(x, 2) for x in os.getloadavg()]
                upstreams = {}
                for n in voiced:  # one process per alias (see the module's docstring)
                    proc, url = start_server(gguf, n, lora(n), cpu_threads())
                    servers.append(proc)
                    upstreams[n] = url
                router = ModelRouter(upstreams)
                remote = remote_engine(router.url, voiced[0], {n: n for n in voiced})
                report("mixed-character", started, {
                    "npcs": voiced, "server": f"{len(voiced)} llama_cpp.server processes (one per character's "
                                              f"adapter) behind a loopback model router",
                    **side_by_side(local, remote, mixed)}, None)
        finally:
            if router is not None:
                router.close()
            for proc in servers:
                proc.kill()
                proc.wait(10)


if __name__ == "__main__":
    main()
