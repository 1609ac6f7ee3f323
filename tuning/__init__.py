"""Eterna's form layer: training data and its gate, fine-tuning methods, the recipes, and adapters on disk.

- data: `formats.py` (messages, Alpaca, ShareGPT, preference pairs), `data.py` (strict loaders), `gate.py` (the
  data gate that reports every problem), `facts.py` (the fact linter);
- methods and recipes: `methods.py` (LoRA, DoRA, QLoRA, IA3, prompt and prefix tuning, bottleneck adapters in
  `bottleneck.py`, full fine-tuning), `recipes.py` (recipe files), `sft.py`, `dpo.py`, `raft.py` (grounded-answer
  items), `distill.py` and `student.py` (a character distilled into a small student), with `artifact.py`,
  `checkpoints.py` and `speed.py` shared by every recipe;
- artifacts: `base.py` (the base model and its fingerprint), `adapters.py` (loading, selecting, shipping),
  `merge.py` (an adapter folded into its base), `export.py` (a LoRA as a GGUF LoRA for llama.cpp).

Adapters carry voice, tone and format; facts come from `retrieval`. This package never imports `app`; from
`retrieval` it uses only the shared modules (`errors`, `fileio`, `registry`, `types`, and the embedder's
`package_dir`).
"""
