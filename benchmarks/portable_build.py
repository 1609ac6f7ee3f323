"""What the portable llama.cpp build costs: raw decode speed of this venv's build against another build (e.g. a
native one, `GGML_NATIVE=ON`, installed in a throwaway venv), alternating runs on the same GGUF and prompts.

    .venv/bin/python benchmarks/portable_build.py --other /tmp/native/venv/bin/python [--rounds 3]

Make the other venv with: python3 -m venv /tmp/native/venv && CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=ON"
/tmp/native/venv/bin/pip install --no-cache-dir llama-cpp-python==0.3.36. Prints one JSON object per round and one
summary: median decode tokens/s of each build and their ratio. Writes nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, os, statistics, sys, time
from llama_cpp import Llama, llama_print_system_info
n = len(os.sched_getaffinity(0))
llm = Llama(model_path=sys.argv[1], n_ctx=2048, n_threads=n, n_threads_batch=n, verbose=False)
prompts = ["Describe the docks at the change of shift.", "Who are you, and what is your work here?",
           "Tell me a short story about a lost cargo pod.", "What should a newcomer never do on the station?",
           "Greet a new arrival.", "What do you do when the lights fail?", "Tell me about your day.",
           "What is the best food aboard?"]
dec, first_ms = [], []
for p in prompts:
    prompt = ("<|im_start|>system\nYou are a station hand.<|im_end|>\n<|im_start|>user\n" + p
              + "<|im_end|>\n<|im_start|>assistant\n")
    t0, first, k = time.perf_counter(), None, 0
    for _ in llm.create_completion(prompt, max_tokens=64, temperature=0.0, repeat_penalty=1.0, stream=True):
        first = first or time.perf_counter()
        k += 1
    end = time.perf_counter()
    if k > 1:
        dec.append((k - 1) / (end - first))
    first_ms.append(1000 * (first - t0))
print(json.dumps({"decode_tok_s_p50": round(statistics.median(dec), 1),
                  "first_token_ms_p50": round(statistics.median(first_ms), 1),
                  "system_info": llama_print_system_info().decode().strip()}))
"""


def run(python: str, gguf: Path) -> dict:
    out = subprocess.run([python, "-c", CHILD, str(gguf)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--other", required=True, help="the python of a venv holding the other llama-cpp-python build")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tuning.base import BUILTIN_LLMS, model_gguf

    gguf = model_gguf(next(iter(BUILTIN_LLMS)))
    ours, theirs = [], []
    for i in range(args.rounds):  # alternating, so drift in the machine's load hits both
        o, t = run(args.other, gguf), run(sys.executable, gguf)
        theirs.append(o["decode_tok_s_p50"])
        ours.append(t["decode_tok_s_p50"])
        print(json.dumps({"round": i, "this_build": t, "other_build": o}), flush=True)
    print(json.dumps({"figure": "portable_build", "this_decode_tok_s": statistics.median(ours),
                      "other_decode_tok_s": statistics.median(theirs),
                      "ratio_this_vs_other": round(statistics.median(ours) / statistics.median(theirs), 3),
                      "rounds": args.rounds, "note": "raw llama-cpp-python, greedy, 64 tokens, 8 prompts; "
                      "median of per-round medians"}))


if __name__ == "__main__":
    main()
