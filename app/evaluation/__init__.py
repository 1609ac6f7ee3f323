"""Evaluation: the figures a world's team checks after a change, and the A/B harness that compares changes.

- a world's own figures: `facts.py` (`eterna eval facts`, `eterna eval router`), `replies.py` (`eterna eval
  quality`, with the reply metrics of `quality.py`), `measures.py` (gold-document hit rate, nDCG@10);
- the A/B harness (`eterna eval ab`): `ab.py` runs the same items through every engine variant (base, +RAG,
  +adapter, both, routed, or any config), `metrics.py` scores each answer, `stats.py` gives paired intervals and
  tests, `report.py` writes the report, `review.py` the blind side-by-side review and its import as DPO pairs;
- public benchmarks: `mc.py` (`eterna eval mc`, multiple choice the lm-eval way), `retrieval_eval.py` (`eterna
  eval retrieval` on a BEIR folder) and `beir.py` (BEIR documents as Eterna lore).
"""
