"""Does shipping in float16 change the voice? Each shipped adapter against the float32 one it was halved from.

For every character whose shipped adapter (its `adapter:` in configs/npcs.yaml) has a trained copy in --trained
(default: paths.adapters, where `make adapters` writes), on the base model in float32 (transformers): the largest
logit gap between the two on the character's persona prompt and a greeting, next to the adapter's own effect (the
gap to the base model), whether the greedy next tokens agree at every position, and whether greedy replies of 40
tokens are identical. Plus the bytes of both. One JSON line.

    .venv/bin/python benchmarks/bench_halving.py [--trained DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.config import Cast, EternaConfig, GenerationConfig  # noqa: E402
from app.prompt import system_prompt  # noqa: E402
from app.backends.transformers import Generator  # noqa: E402
from tuning.base import prepare_model  # noqa: E402

LINE = "Good evening. May I come in?"


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--trained", help="folder of the float32 adapters, <npc>/ each (default: paths.adapters)")
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = EternaConfig.load(REPO / "configs" / "eterna.yaml")
    trained_dir = Path(args.trained) if args.trained else cfg.paths.adapters
    cast = Cast.load(cfg.paths.npcs, cfg.world)
    gen = Generator(prepare_model(cfg.models.llm, cfg.models.cache_dir), "float32")
    result = {"benchmark": "fp16_shipping", "line": LINE, "npcs": {}}
    for npc in cast.npcs:
        trained = trained_dir / npc.id
        if npc.adapter is None or not (trained / "adapter_model.safetensors").is_file():
            continue
        gen.add_adapter(f"{npc.id}-fp32", trained)
        gen.add_adapter(f"{npc.id}-fp16", npc.adapter)
        msgs = [{"role": "system", "content": system_prompt(npc, cfg.world, cfg.prompts)},
                {"role": "user", "content": LINE}]
        enc = gen._encode(msgs)
        with torch.inference_mode():
            logits = {}
            for kind in ("fp32", "fp16"):
                gen.model.set_adapter(f"{npc.id}-{kind}")
                logits[kind] = gen.model(**enc).logits[0].float()  # (seq, vocab)
            with gen.model.disable_adapter():
                base = gen.model(**enc).logits[0].float()  # (seq, vocab)
        a, b = logits["fp32"], logits["fp16"]
        decoding = GenerationConfig(max_new_tokens=40)
        said = {k: gen.generate(msgs, decoding, adapter=f"{npc.id}-{k}").text for k in ("fp32", "fp16")}
        result["npcs"][npc.id] = {
            "bytes_fp32": (trained / "adapter_model.safetensors").stat().st_size,
            "bytes_fp16": (npc.adapter / "adapter_model.safetensors").stat().st_size,
            "max_logit_gap_fp16_vs_fp32": round((a - b).abs().max().item(), 4),
            "max_logit_gap_adapter_vs_base": round((a - base).abs().max().item(), 2),
            "argmax_agreement": round((a.argmax(-1) == b.argmax(-1)).float().mean().item(), 4),
            "same_greedy_reply": said["fp32"] == said["fp16"], "reply_fp16": said["fp16"]}
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
