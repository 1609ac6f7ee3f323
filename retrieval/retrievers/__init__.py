"""One module per retrieval mode and one for the rerankers, each loaded by name from the registries in
`retrieval.retriever` (MODES, RERANKERS) on first use: a new mode is a module here with `make(spec)` and one
`MODES.add` line there."""
