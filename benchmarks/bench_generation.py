"""Generation speed of the default model through Eterna's runtime: bf16 vs fp32 (baseline), one JSON line.

Same prompts, greedy, 64 new tokens; the median tokens/s of each dtype and their ratio.

    .venv/bin/python benchmarks/bench_generation.py
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.config import EternaConfig, GenerationConfig  # noqa: E402
from app.backends.transformers import Generator  # noqa: E402
from tuning.base import prepare_model  # noqa: E402

PROMPTS = ["Describe the reading room at dusk.", "Who are you, and what do you guard?",
           "Tell me a short story about a lost book.", "What should a careful reader never do?",
           "Greet a new visitor to the library.", "Explain the lending rules, briefly."]


def main() -> None:
    cfg = EternaConfig.load(REPO / "configs" / "eterna.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = prepare_model(cfg.models.llm, Path(tmp) if not cfg.models.cache_dir.exists()
                                  else cfg.models.cache_dir)
        gen_cfg = GenerationConfig(max_new_tokens=64, repetition_penalty=1.0)
        result = {"benchmark": "generation_speed", "model": cfg.models.llm, "new_tokens": 64}
        for dtype in ("float32", "bfloat16"):
            gen = Generator(model_dir, dtype)
            gen.generate([{"role": "user", "content": "warm up"}], gen_cfg)
            speeds = []
            for p in PROMPTS:
                out = gen.generate([{"role": "system", "content": "You are a librarian."},
                                    {"role": "user", "content": p}], gen_cfg)
                speeds.append(out.new_tokens / out.seconds)
            result[f"{dtype}_tokens_per_second"] = round(statistics.median(speeds), 1)
        result["bf16_over_fp32"] = round(result["bfloat16_tokens_per_second"] / result["float32_tokens_per_second"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
