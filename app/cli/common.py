"""What every command group shares: the config a command runs on, its output, the engine, quiet libraries, the
flags many commands take, and choices read from where the framework defines them."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import get_args

from retrieval.errors import EternaError

DEFAULT_CONFIG = Path("configs/eterna.yaml")


def quiet_libraries() -> None:
    """Third-party chatter (progress bars, optional-kernel notices) would pollute --json stdout."""
    import logging
    import warnings

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the CLI never reaches a hub
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore")
    for name in ("transformers", "sentence_transformers", "bitsandbytes", "huggingface_hub", "datasets", "peft",
                 "trl", "accelerate", "root"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # transformers reads these when it is imported: a command that never imports it (`index list`) does not pay
    # 1.3 s to quiet it; in a process where it is already loaded (tests calling main()) it is quieted directly
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


def quiet_datasets() -> None:
    """The trainers tokenize with datasets' map, whose progress bars would fill stderr (training commands only:
    importing datasets costs every other command a second)."""
    import datasets

    datasets.disable_progress_bars()


def load_config(args):
    """The --config file with the command's --corpus, --index, --npcs and --backend applied."""
    from app.config import EternaConfig

    path = Path(args.config)
    if not path.is_file():
        raise EternaError(f"config {path} not found; run from the project folder or pass --config FILE")
    cfg = EternaConfig.load(path)
    paths = cfg.paths.model_copy(update={k: Path(v).resolve() for k, v in (
        ("corpus", getattr(args, "corpus", None)), ("index", getattr(args, "index", None)),
        ("npcs", getattr(args, "npcs", None))) if v is not None})
    models = cfg.models
    if getattr(args, "backend", None):
        models = models.model_copy(update={"backend": args.backend})
    return cfg.model_copy(update={"paths": paths, "models": models})


def make_engine(args, cfg=None):
    from app.dialogue import DialogueEngine

    return DialogueEngine.from_settings(cfg or load_config(args), adapters=not getattr(args, "no_adapters", False))


def main_rank() -> bool:
    """False in the other processes of an `accelerate launch`/torchrun job: only the main one reports."""
    return int(os.environ.get("RANK", "0")) == 0


def emit(args, obj: dict, text: str) -> None:
    if not main_rank():
        return
    print(json.dumps(obj, ensure_ascii=False) if getattr(args, "json", False) else text, flush=True)


def progress(label: str):
    def show(i: int, n: int) -> None:
        if sys.stderr.isatty() or i == n or i % 10 == 0:
            print(f"\r{label}: {i}/{n}", end="\n" if i == n else "", file=sys.stderr, flush=True)
    return show


# --- flags and choices ------------------------------------------------------------------------------------

def add_flags(sp, *, json_flag=True, npcs=False, index=False, corpus=False) -> None:
    if json_flag:
        sp.add_argument("--json", action="store_true", help="print one JSON object per result on stdout")
    if npcs:
        sp.add_argument("--npcs", help="cast file (default: paths.npcs)")
    if index:
        sp.add_argument("--index", help="index directory (default: paths.index)")
    if corpus:
        sp.add_argument("--corpus", help="lore directory (default: paths.corpus)")


def _config_choices(section: str, field: str) -> list[str]:
    """The values a config field accepts, read from its `Literal` annotation in app/config.py (one list)."""
    from app.config import EternaConfig

    model = EternaConfig.model_fields[section].annotation
    return list(get_args(model.model_fields[field].annotation))


def retrieval_modes() -> list[str]:
    """The registered retrieval modes (retrieval/retriever.py's MODES, which loads neither FAISS nor BM25)."""
    from retrieval.retriever import MODES

    return list(MODES)  # registration order: dense, bm25, hybrid


def add_backend_flag(sp) -> None:
    from app.backends import backend_choices

    sp.add_argument("--backend", choices=backend_choices(), help="override models.backend")


def format_names() -> str:
    from tuning.formats import FORMATS

    return ", ".join(FORMATS)
