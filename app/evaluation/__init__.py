"""Evaluation harness. This foundation ships the router and retrieval measurements; the A/B harness over
engine variants (base, +RAG, +adapter, both, routed) builds on them."""
