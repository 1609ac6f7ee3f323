"""Eterna's form layer: chat data validation, PEFT method registry, SFT recipe, adapter save/load.

Adapters carry voice, tone and format; facts come from `retrieval`. This package imports `retrieval` only
for its shared `errors` and `fileio` modules, never `app`.
"""
