"""Soak: two `eterna serve` processes on one Redis, 8 clients alternating between them in the same sessions.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/soak_redis.py [--minutes 10] [--clients 8]
        [--config configs/eterna.yaml] [--kill-redis-at SECONDS [--outage 6]]

Everything runs on loopback and under one temporary folder: a `redis-server` on a free port (append-only file,
fsynced on every write), the world's index built once there and copied for the second server (the reference
deployment's "built once, copied"), a copy of the config with `memory.store: redis`, and two `eterna serve
--backend llamacpp` processes (each pinned to one core when the machine has two or more, OMP_NUM_THREADS=1).

Each client owns one session at a time (a new one every `--session-turns` answered turns) and sends its turns to the
two servers in turn (a session moves server by server every turn, no sticky routing). Lines come from the world's
eval sets (paths.eval): fact questions (facts.jsonl, with their chapter), small talk (style_prompts.jsonl) and
adversarial lines (adversarial.jsonl). The run has three phases of `--minutes` in all: the mix (6/8 of the time: 50%
fact, 30% small talk, 20% adversarial), then fact lines only (1/8), then small talk only (1/8), the CPU phases last
so that they measure servers past their first turns (first loads, kernels compiled per input shape). A 429/503 is
waited out (Retry-After) and the client moves on to its next line.

At the end every session is read back from Redis and checked: 0 lost turns (every 200 reply is in its session,
once, in the client's order), 0 foreign lines (nothing of another session, nothing from a turn that failed), 0 5xx
other than deliberate 429/503. Reported: 429/503 rates, turns by route, p50/p95 latency, and the per-turn CPU of the
two server processes (psutil cpu_times deltas, children included) over the fact-only and the small-talk-only
phases, divided by their answered turns; from those, the cores N servers need.

`--kill-redis-at S`: S seconds into the soak Redis is killed (SIGKILL, as a crash), `--outage` seconds later it is
started again on the same port and folder. Checked: turns in the outage fail 503 (none 500), nothing half-written
(the read-back check above), and turns answer 200 again after it returns.

Prints one JSON object. Writes only under a temporary folder (and reads the model cache, models.cache_dir).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MIX = {"fact": 0.5, "small_talk": 0.3, "adversarial": 0.2}
KEY_PREFIX = "eterna:session:"


def pct(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(q * len(xs)))], 3)


def load_lines(eval_dir: Path, cast, max_chars: int, specials: tuple[str, ...]) -> dict[str, list[dict]]:
    """The workload's lines by kind: {text, npc, chapter, clean, bad}. `clean`: the line as the server's guard
    cleans it (what the session stores); `bad`: the guard refuses it (a character not in the cast, nothing left after
    cleaning: the adversarial set has a few), so it must be answered 4xx, deliberately."""
    from app.guard import check_turn
    from retrieval.errors import EternaError
    from retrieval.fileio import read_jsonl

    def rows(name: str, field: str) -> list[dict]:
        out = []
        for _, it in read_jsonl(eval_dir / name):
            line = {"text": it[field], "npc": it["npc"], "chapter": int(it.get("chapter", 1)), "bad": False}
            try:
                line["clean"] = check_turn(cast, max_chars, it["npc"], it[field], line["chapter"], "s", specials)[1]
            except EternaError:
                line["bad"], line["clean"] = True, None
            out.append(line)
        return out

    return {"fact": rows("facts.jsonl", "question"), "small_talk": rows("style_prompts.jsonl", "text"),
            "adversarial": rows("adversarial.jsonl", "text")}


def write_config(shipped: Path, tmp: Path, redis_url: str) -> tuple[Path, object]:
    """A copy of the world's config with every path absolute, sessions in Redis, and the index under `tmp`."""
    import yaml

    from app.config import EternaConfig

    cfg = EternaConfig.load(shipped)
    data = cfg.model_dump(mode="json", exclude_unset=True)
    data["paths"].update(index=str(tmp / "index-a"), sessions=str(tmp / "sessions"), adapters=str(tmp / "adapters"))
    data["memory"] = {**data.get("memory", {}), "store": "redis", "url": redis_url}
    from retrieval.embeddings import resolve_embedder_dtype

    # pinned (auto resolves per CPU): an index is refused at another precision than it was built with
    data["models"]["embedder_dtype"] = resolve_embedder_dtype(cfg.models.embedder_dtype)
    path = tmp / "eterna.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path, EternaConfig.load(path)


def start_servers(cfg_path: Path, indexes: list[Path], log_dir: Path) -> list[tuple[subprocess.Popen, int]]:
    import httpx

    from tests.app.redis_server import free_port

    cores = sorted(os.sched_getaffinity(0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETERNA_")}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    servers = []
    for i, index in enumerate(indexes):
        port = free_port()
        core = {cores[i % len(cores)]} if len(cores) >= 2 else None
        log = open(log_dir / f"server-{i}.log", "wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "--config", str(cfg_path), "serve", "--port", str(port),
             "--backend", "llamacpp", "--index", str(index)], cwd=REPO, env=env, stdout=log, stderr=log,
            preexec_fn=(lambda c=core: os.sched_setaffinity(0, c)) if core else None)
        servers.append((proc, port))
    for i, (proc, port) in enumerate(servers):
        deadline = time.time() + 300
        while True:
            if proc.poll() is not None or time.time() > deadline:
                stop_servers(servers)
                raise SystemExit(f"server {i} did not start: {(log_dir / f'server-{i}.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    return servers


def stop_servers(servers) -> None:
    for proc, _ in servers:
        if proc.poll() is None:
            proc.terminate()
    for proc, _ in servers:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes and their live children, and their reaped children's."""
    import psutil

    total = 0.0
    for pid in pids:
        p = psutil.Process(pid)
        for q in [p, *p.children(recursive=True)]:
            try:
                t = q.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.NoSuchProcess:
                continue
    return total


class Client:
    """One player at a time: a session, its turns sent to the servers in turn."""

    def __init__(self, k: int, ports: list[int], lines: dict, results: list, expected: dict, lock: threading.Lock,
                 session_turns: int, seed: int):
        self.k, self.ports, self.lines, self.results, self.expected = k, ports, lines, results, expected
        self.lock, self.session_turns = lock, session_turns
        self.rng = random.Random(seed * 1000 + k)
        self.sessions, self.answered, self.turn = 0, 0, 0
        self.session = self._new_session()

    def _new_session(self) -> str:
        self.sessions += 1
        self.answered = 0
        return f"soak-c{self.k}-s{self.sessions}"

    def run_phase(self, phase: str, kinds: dict[str, float], deadline: float, t0: float) -> None:
        import httpx

        self.phase = phase

        names, weights = zip(*kinds.items())
        with httpx.Client(timeout=300) as http:
            while time.monotonic() < deadline:
                kind = self.rng.choices(names, weights)[0]
                line = self.rng.choice(self.lines[kind])
                server = (self.k + self.turn) % len(self.ports)
                self.turn += 1
                started = time.monotonic()
                row = {"phase": phase, "kind": kind, "server": server, "at": round(started - t0, 3),
                       "bad": line["bad"]}
                try:
                    r = http.post(f"http://127.0.0.1:{self.ports[server]}/v1/npcs/{line['npc']}/say",
                                  json={"text": line["text"], "session": self.session, "chapter": line["chapter"]})
                    row["status"] = r.status_code
                except httpx.HTTPError as e:
                    row["status"], row["error"] = "connection", str(e)[:200]
                    r = None
                row["latency_s"] = time.monotonic() - started
                if r is not None and r.status_code == 200:
                    reply = r.json()
                    row.update(route=reply["route"], generated=reply["tokens"].get("reply", 0) > 0,
                               timings=reply["timings"],
                               right_session=reply["session"] == self.session and reply["npc"] == line["npc"])
                    with self.lock:
                        self.expected[self.session].append((line["npc"], line["clean"], reply["text"]))
                    self.answered += 1
                    if self.answered >= self.session_turns:
                        self.session = self._new_session()
                elif r is not None and r.status_code in (429, 503):
                    row["detail"] = r.text[:200]
                    time.sleep(float(r.headers.get("retry-after", "1")))
                else:
                    if r is not None:
                        row["detail"] = r.text[:300]
                    time.sleep(1)
                with self.lock:
                    self.results.append(row)


def warm_up(ports: list[int], lines: dict, expected: dict) -> None:
    """One turn of each kind on each server before the clock starts (first loads, first generation)."""
    import httpx

    with httpx.Client(timeout=600) as http:
        for i, port in enumerate(ports):
            for kind in MIX:
                line, session = next(x for x in lines[kind] if not x["bad"]), f"warm-up-{i}"
                r = http.post(f"http://127.0.0.1:{port}/v1/npcs/{line['npc']}/say",
                              json={"text": line["text"], "session": session, "chapter": line["chapter"]})
                if r.status_code != 200:
                    raise SystemExit(f"warm-up turn failed: {r.status_code} {r.text[:300]}")
                expected[session].append((line["npc"], line["clean"], r.json()["text"]))


def read_back(url: str) -> tuple[dict[str, list[dict]], int]:
    """Every session in Redis: {session id: records}, and how many records did not parse."""
    import redis

    client = redis.Redis.from_url(url)
    out, broken = {}, 0
    for key in client.scan_iter(KEY_PREFIX + "*"):
        key = key.decode()
        if key.endswith(":ids"):
            continue
        records = []
        for raw in client.lrange(key, 0, -1):
            try:
                records.append(json.loads(raw))
            except json.JSONDecodeError:
                broken += 1
        out[key[len(KEY_PREFIX) + 1:-1]] = records  # eterna:session:{<id>}
    client.close()
    return out, broken


def check_sessions(stored: dict[str, list[dict]], expected: dict[str, list[tuple]]) -> dict:
    """Lost turns (answered, not stored), foreign lines (stored, not answered in that session), order."""
    lost = foreign = out_of_order = half = 0
    examples = []
    for session in sorted(set(stored) | set(expected)):
        want = expected.get(session, [])  # (npc, the line as the guard cleaned it, reply)
        got = []
        for rec in stored.get(session, []):
            if not all(isinstance(rec.get(f), str) for f in ("npc", "user", "reply")):
                half += 1
                continue
            got.append((rec["npc"], rec["user"], rec["reply"]))
        left = Counter(got)
        for item in want:
            if left[item] > 0:
                left[item] -= 1
            else:
                lost += 1
                examples.append({"lost": session, "line": item[1][:80]})
        extra = sum(left.values())
        foreign += extra
        if extra:
            examples.append({"foreign": session, "lines": [g[1][:80] for g in got if g not in want][:3]})
        if not extra and got != want and Counter(got) == Counter(want):
            out_of_order += 1
    return {"sessions": len(expected), "stored_sessions": len(stored),
            "turns_stored": sum(len(v) for v in stored.values()), "lost_turns": lost, "foreign_lines": foreign,
            "sessions_out_of_order": out_of_order, "half_written_records": half, "examples": examples[:5]}


def summarise(results: list[dict]) -> dict:
    n = len(results)
    status = Counter(str(r["status"]) for r in results)
    bad = [r for r in results if r["bad"]]
    failed = [r for r in results if not r["bad"] and r["status"] not in (200, 429, 503)]
    ok = [r for r in results if r["status"] == 200]
    lat = defaultdict(list)
    for r in ok:
        lat["all"].append(r["latency_s"])
        lat[f"kind:{r['kind']}"].append(r["latency_s"])
        lat[f"route:{r['route']}"].append(r["latency_s"])
    return {
        "requests": n, "status": dict(status),
        "rate_429": round(status.get("429", 0) / max(n, 1), 4), "rate_503": round(status.get("503", 0) / max(n, 1), 4),
        "other_5xx": sum(v for k, v in status.items() if k.startswith("5") and k != "503"),
        "deliberate_4xx": {"lines_the_guard_refuses": len(bad),
                           "answered_4xx": sum(isinstance(r["status"], int) and 400 <= r["status"] < 500
                                               for r in bad)},
        "other_failures": len(failed) + sum(not (isinstance(r["status"], int) and 400 <= r["status"] < 500)
                                            for r in bad),
        "failure_examples": [{k: r.get(k) for k in ("phase", "kind", "status", "detail", "error")}
                             for r in failed[:5]],
        "wrong_session_in_reply": sum(1 for r in ok if not r["right_session"]),
        "turns_by_route": dict(Counter(r["route"] for r in ok)),
        "turns_by_kind": dict(Counter(r["kind"] for r in ok)),
        "turns_by_server": dict(Counter(str(r["server"]) for r in ok)),
        "generated_turns": sum(r["generated"] for r in ok),
        "latency_s": {k: {"n": len(v), "p50": pct(v, 0.5), "p95": pct(v, 0.95)} for k, v in sorted(lat.items())},
        "server_step_ms_p50": {kind: step_medians([r for r in ok if r["kind"] == kind]) for kind in MIX},
    }


def step_medians(rows: list[dict]) -> dict:
    """The median wall time of each step the server timed (Reply.timings), over these turns."""
    steps = defaultdict(list)
    for r in rows:
        for k, v in r["timings"].items():
            if isinstance(v, (int, float)):
                steps[k].append(v)
    return {k: round(statistics.median(v), 1) for k, v in sorted(steps.items())}


def outage_report(results: list[dict], killed: float, back: float) -> dict:
    # a turn writes its exchange last: every turn that ended while Redis was down must have failed
    during = [r for r in results if killed + 0.5 <= r["at"] + r["latency_s"] <= back]
    after = [r for r in results if r["at"] >= back]
    first_ok = min((r["at"] for r in after if r["status"] == 200), default=None)
    return {"killed_at_s": round(killed, 1), "restarted_at_s": round(back, 1),
            "status_during_outage": dict(Counter(str(r["status"]) for r in during)),
            "status_after_restart": dict(Counter(str(r["status"]) for r in after)),
            "first_200_after_restart_s": None if first_ok is None else round(first_ok - back, 2),
            "resumed": first_ok is not None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(REPO / "configs" / "eterna.yaml"))
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--session-turns", type=int, default=12, help="answered turns before a client starts a session")
    ap.add_argument("--kill-redis-at", type=float, default=None, help="seconds into the soak: kill Redis, restart")
    ap.add_argument("--outage", type=float, default=6.0, help="seconds Redis stays down")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (the Makefile's `redis` target installs it)")

    import psutil

    from retrieval.embeddings import SentenceTransformerEmbedder
    from retrieval.rebuild import rebuild_index
    from tests.app.redis_server import RedisServer

    load_start = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory(prefix="eterna-soak-") as tmp:
        tmp = Path(tmp)
        redis_server = RedisServer(tmp / "redis").start()
        servers = []
        try:
            cfg_path, cfg = write_config(Path(args.config), tmp, redis_server.url)
            from transformers import AutoTokenizer

            from app.backends.decoding import control_tokens
            from app.config import Cast
            from tuning.base import prepare_model

            specials = control_tokens(AutoTokenizer.from_pretrained(prepare_model(cfg.models.llm,
                                                                                  cfg.models.cache_dir)))
            lines = load_lines(cfg.paths.eval, Cast.load(cfg.paths.npcs, cfg.world), cfg.guard.max_input_chars,
                               specials)
            t_index = time.perf_counter()
            rebuild_index(cfg.paths.corpus, tmp / "index-a",
                          SentenceTransformerEmbedder(cfg.models.embedder, dtype=cfg.models.embedder_dtype),
                          kinds=cfg.world.kinds)
            shutil.copytree(tmp / "index-a", tmp / "index-b")  # built once, copied to the other server
            t_index = time.perf_counter() - t_index
            servers = start_servers(cfg_path, [tmp / "index-a", tmp / "index-b"], tmp)
            pids = [p.pid for p, _ in servers]
            ports = [port for _, port in servers]
            results, expected, lock = [], defaultdict(list), threading.Lock()
            warm_up(ports, lines, expected)
            clients = [Client(k, ports, lines, results, expected, lock, args.session_turns, args.seed)
                       for k in range(args.clients)]
            total = args.minutes * 60
            phases = [("mix", MIX, total * 6 / 8), ("fact_only", {"fact": 1.0}, total / 8),
                      ("small_talk_only", {"small_talk": 1.0}, total / 8)]  # CPU per turn last: warmed up
            redis_proc = psutil.Process(redis_server.proc.pid)
            t0 = time.monotonic()
            outage = {}
            if args.kill_redis_at is not None:
                def chaos():
                    time.sleep(max(0.0, t0 + args.kill_redis_at - time.monotonic()))
                    outage["killed"] = time.monotonic() - t0
                    redis_server.kill()
                    time.sleep(args.outage)
                    redis_server.start()
                    outage["back"] = time.monotonic() - t0
                threading.Thread(target=chaos, daemon=True).start()
            cpu = {}
            for name, kinds, seconds in phases:
                before, wall = cpu_seconds(pids), time.monotonic()
                # each phase has its time from its own start: the turns in flight at the end of the one before
                # (a generated turn on this shared machine can take a minute) do not eat into it
                threads = [threading.Thread(target=c.run_phase, args=(name, kinds, wall + seconds, t0))
                           for c in clients]
                [t.start() for t in threads]
                [t.join() for t in threads]  # the phase ends when its last turn in flight has answered
                spent, wall = cpu_seconds(pids) - before, time.monotonic() - wall
                done = [r for r in results if r["phase"] == name and r["status"] == 200]
                cpu[name] = {"wall_s": round(wall, 1), "turns": len(done),
                             "generated_turns": sum(r["generated"] for r in done),
                             "server_cpu_s": round(spent, 2),
                             "cpu_s_per_turn": round(spent / len(done), 4) if done else None,
                             "server_cores_busy": round(spent / wall, 2),
                             "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}
            try:
                redis_cpu = redis_proc.cpu_times().user + redis_proc.cpu_times().system
            except psutil.NoSuchProcess:
                redis_cpu = None  # restarted: the new process's CPU only
            stored, broken = read_back(redis_server.url)
        finally:
            stop_servers(servers)
            redis_server.stop()
    check = check_sessions(stored, expected)
    check["unparsable_records"] = broken
    summary = summarise(results)
    fact, talk = cpu["fact_only"], cpu["small_talk_only"]
    c_fact = fact["cpu_s_per_turn"]
    out = {
        "figure": "soak_redis", "world": str(Path(args.config).name), "servers": 2, "backend": "llamacpp (in process)",
        "clients": args.clients, "minutes": args.minutes, "session_turns": args.session_turns,
        "workload": {"sets": ["facts.jsonl", "style_prompts.jsonl", "adversarial.jsonl"],
                     "phases": "the mix 6/8 of the time, then fact only 1/8, then small talk only 1/8",
                     "mix": MIX},
        "index_build_s": round(t_index, 1),
        "load_average_at_start": load_start, "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
        "check": check, **summary, "cpu": cpu,
        "redis_cpu_s": None if redis_cpu is None else round(redis_cpu, 2),
        "cores_needed": None if not c_fact else {
            "fact_turns_per_core_s": round(1 / c_fact, 1),
            "rule": f"N servers taking R fact/extract turns per second each need N*R*{c_fact} cores for Eterna "
                    f"(guard, router, retrieval, extraction, memory); generated turns cost "
                    f"{talk['cpu_s_per_turn']} CPU-s each here with generation in process, which the `openai` "
                    f"backend moves to the engine's pool"},
        "pass": check["lost_turns"] == 0 and check["foreign_lines"] == 0 and check["sessions_out_of_order"] == 0
        and check["half_written_records"] == 0 and broken == 0 and summary["other_5xx"] == 0
        and summary["other_failures"] == 0
        and summary["wrong_session_in_reply"] == 0,
    }
    if outage:
        out["redis_outage"] = outage_report(results, outage["killed"], outage.get("back", float("inf")))
        out["pass"] = out["pass"] and out["redis_outage"]["resumed"] and \
            set(out["redis_outage"]["status_during_outage"]) <= {"503", "429"}
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
