"""Probe child entry points for tests/app/test_probe.py: real children that really die by a signal, hang, or pass.

Each takes (model, config, threads) like app.probe.decode_check and is named to the probe by `--entry`."""

import os
import signal
import time
from pathlib import Path


def _count(model: str) -> None:
    with Path(model).with_suffix(".runs").open("a", encoding="utf-8") as f:
        f.write("run\n")


def sigill_with_extra_bufts(model: str, config: dict, threads) -> dict:
    """What an AMX machine does: the repacked (extra buffer types) configuration dies, the plain one runs."""
    _count(model)
    if config.get("extra_bufts"):
        os.kill(os.getpid(), signal.SIGILL)
        time.sleep(5)
    return {"tokens": 4, "system_info": "test"}


def always_sigill(model: str, config: dict, threads) -> dict:
    _count(model)
    os.kill(os.getpid(), signal.SIGILL)
    time.sleep(5)
    return {}


def passes(model: str, config: dict, threads) -> dict:
    _count(model)
    return {"tokens": 4, "system_info": "test"}


def hangs(model: str, config: dict, threads) -> dict:
    _count(model)
    time.sleep(600)
    return {}
