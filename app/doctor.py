"""`eterna doctor`: what this machine runs and why, in one report a user pastes into a bug report.

The backend chosen and why (the startup probe's result and its cache entry), the CPU and kernel, the llama.cpp
build, torch and its threads, the model and embedder files with their hashes, the live index generation, and each
character's adapter checked against the base model. Nothing native is loaded in this process: the llama.cpp facts
come from its files, its build record and the probe's child.
"""

from __future__ import annotations

import platform
from pathlib import Path

from app.config import Cast, EternaConfig


def report(cfg: EternaConfig) -> dict:
    from app.assemble import choose_backend
    from app.probe import cpu_info, llama_build

    out: dict = {"eterna": _version("eterna"), "python": platform.python_version(), "platform": platform.platform()}
    out["cpu"] = cpu_info()
    try:
        name, extra, choice = choose_backend(cfg)
    except Exception as e:  # noqa: BLE001 - a doctor reports what is wrong instead of stopping at it
        name, extra, choice = None, {}, {"configured": cfg.models.backend, "reason": f"error: {e}"}
    probe = choice.pop("probe", None)
    out["backend"] = {"chosen": name, **choice}
    lib = llama_build()
    if probe is not None:
        passed = next((a for a in probe["attempts"] if a["ok"]), None)
        lib["system_info"] = passed["info"].get("system_info") if passed else None
        lib["extra_bufts"] = extra.get("extra_bufts") if probe["backend"] == "llamacpp" else None
    out["llama_cpp"] = lib
    out["probe"] = probe and {k: probe[k] for k in ("backend", "config", "attempts", "key", "cache_file", "cached")}
    out["torch"] = _torch()
    out["models"] = _models(cfg)
    out["index"] = _index(cfg)
    out["adapters"] = _adapters(cfg, out["models"]["llm"].get("fingerprint"))
    return out


def _version(dist: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _torch() -> dict:
    import os

    import torch

    return {"version": torch.__version__, "threads": torch.get_num_threads(),
            "interop_threads": torch.get_num_interop_threads(), "cpus_usable": len(os.sched_getaffinity(0)),
            "cuda": torch.cuda.is_available(), "mkldnn": torch.backends.mkldnn.is_available(),
            "tokenizers_parallelism": os.environ.get("TOKENIZERS_PARALLELISM")}


def _models(cfg: EternaConfig) -> dict:
    from app.probe import _file_digest
    from retrieval.embeddings import resolve_embedder
    from retrieval.fileio import fingerprint_dir
    from tuning.base import model_fingerprint, model_gguf, prepared_checkpoint

    m = cfg.models
    llm: dict = {"spec": m.llm}
    try:
        gguf = model_gguf(m.llm, m.llamacpp.gguf)
        if gguf is not None:
            llm["gguf"] = str(gguf)
            llm["gguf_sha256"] = _file_digest(gguf) if gguf.is_file() else "missing"
        ckpt = prepared_checkpoint(m.llm, m.cache_dir)
        llm["checkpoint"] = str(ckpt) if ckpt else "not prepared (run `eterna models prepare`)"
        llm["fingerprint"] = model_fingerprint(ckpt) if ckpt else None
    except Exception as e:  # noqa: BLE001
        llm["error"] = str(e)
    emb: dict = {"spec": m.embedder, "dtype": m.embedder_dtype}
    try:
        where = resolve_embedder(m.embedder)
        emb["path"] = str(where)
        emb["fingerprint"] = fingerprint_dir(where) if isinstance(where, Path) else None
    except Exception as e:  # noqa: BLE001
        emb["error"] = str(e)
    return {"llm": llm, "embedder": emb}


def _index(cfg: EternaConfig) -> dict:
    from retrieval.rebuild import list_generations

    root = cfg.paths.index
    try:
        live = [g for g in list_generations(root) if g["live"]]
    except Exception as e:  # noqa: BLE001
        return {"root": str(root), "error": str(e)}
    if not live:
        return {"root": str(root), "generation": None, "fix": "build one with `eterna index rebuild`"}
    return {"root": str(root), **live[0]}


def _adapters(cfg: EternaConfig, fingerprint: str | None) -> list[dict]:
    from tuning.adapters import manifest_problems, read_adapter_manifest

    try:
        cast = Cast.load(cfg.paths.npcs, cfg.world)
    except Exception as e:  # noqa: BLE001
        return [{"error": str(e)}]
    out = []
    for npc in cast.npcs:
        if npc.adapter is None:
            continue
        row: dict = {"npc": npc.id, "path": str(npc.adapter)}
        try:
            man = read_adapter_manifest(npc.adapter)
            row["base_fingerprint"] = man.get("base", {}).get("fingerprint")
            problems = manifest_problems(man, npc.adapter, npc=npc.id, fingerprint=fingerprint)
            row["check"] = "ok" if not problems else problems[0]
            if fingerprint is None:
                row["check"] = "base not prepared: not checked"
        except Exception as e:  # noqa: BLE001
            row["check"] = str(e)
        out.append(row)
    return out


def render(r: dict) -> str:
    cpu, lib, b = r["cpu"], r["llama_cpp"], r["backend"]
    flags = " ".join(f for f, on in cpu["flags"].items() if on) or "none"
    lines = [f"eterna {r['eterna']}  python {r['python']}  {r['platform']}",
             f"backend: {b.get('chosen')} (configured: {b.get('configured')})",
             f"  why: {b.get('reason')}",
             f"cpu: {cpu['model']} ({cpu['machine']}), kernel {cpu['kernel']}",
             f"  flags: {flags}"]
    if lib.get("installed"):
        build = lib.get("build") or {}
        lines += [f"llama.cpp: llama-cpp-python {lib['version']}, libraries sha256 {lib['libraries_sha256']}",
                  f"  built with: {build.get('cmake_args', 'unknown (not built by `make setup`)')}",
                  f"  extra buffer types: {_onoff(lib.get('extra_bufts'))}",
                  f"  system info: {lib.get('system_info') or '-'}"]
    else:
        lines.append("llama.cpp: not installed")
    p = r.get("probe")
    if p:
        lines.append(f"probe: {'cached ' if p['cached'] else ''}{p['cache_file'] or '(not cached)'}")
        for a in p["attempts"]:
            lines.append(f"  {a['config']}: " + ("ok" if a["ok"] else a["signal"] or a["error"]))
    t = r["torch"]
    lines.append(f"torch {t['version']}: {t['threads']} threads ({t['cpus_usable']} CPUs usable), cuda {t['cuda']}")
    llm, emb = r["models"]["llm"], r["models"]["embedder"]
    lines += [f"llm: {llm.get('spec')}  gguf {llm.get('gguf', '-')} sha256 {str(llm.get('gguf_sha256', '-'))[:16]}",
              f"  checkpoint {llm.get('checkpoint', llm.get('error'))}  fingerprint {llm.get('fingerprint')}",
              f"embedder: {emb.get('spec')} ({emb.get('dtype')})  fingerprint {emb.get('fingerprint', emb.get('error'))}"]
    ix = r["index"]
    lines.append(f"index: {ix.get('root')}  live {ix.get('generation')}  "
                 + (f"{ix.get('documents')} docs, {ix.get('chunks')} chunks" if ix.get("generation") else
                    ix.get("error") or ix.get("fix", "")))
    for a in r["adapters"]:
        lines.append(f"adapter {a.get('npc', '?')}: {a.get('check', a.get('error'))}")
    return "\n".join(lines)


def _onoff(v) -> str:
    return "on" if v is True else "off" if v is False else "-"

