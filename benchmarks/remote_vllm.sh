#!/usr/bin/env bash
# GPU smoke test of the openai backend on vLLM: export the archivist's adapter as PEFT, serve the base with it on
# vLLM (loopback), and ask Eterna through `models.backend: openai`. Needs an NVIDIA GPU and `pip install vllm`;
# without either it prints "skipped: ..." and exits 0 (this project's own machines have no GPU).
#   bash benchmarks/remote_vllm.sh [PORT]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PORT=${1:-8011}
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
  echo "skipped: no GPU (nvidia-smi finds none); vLLM needs one"; exit 0
fi
if ! "$PY" -c "import vllm" >/dev/null 2>&1; then
  echo "skipped: vllm is not installed in $PY (pip install vllm)"; exit 0
fi
WORK=$(mktemp -d)
trap 'kill "${VLLM_PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
"$PY" -m app adapters export --npc archivist --format peft --out "$WORK/adapters"
BASE=HuggingFaceTB/SmolLM2-135M-Instruct   # a bf16 hub base: not the de-quantised Q4_1 base (docs/serving.md)
"$PY" -m vllm.entrypoints.openai.api_server --model "$BASE" --host 127.0.0.1 --port "$PORT" --enable-lora \
  --max-lora-rank 8 --lora-modules "archivist=$WORK/adapters/archivist" >"$WORK/vllm.log" 2>&1 &
VLLM_PID=$!
for _ in $(seq 1 180); do
  curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null && break
  kill -0 "$VLLM_PID" 2>/dev/null || { tail -50 "$WORK/vllm.log"; echo "vLLM died"; exit 1; }
  sleep 2
done
cat >"$WORK/remote.yaml" <<YAML
models: {backend: openai, remote: {base_url: "http://127.0.0.1:$PORT/v1", model: $BASE, adapters: {archivist: archivist}}}
YAML
"$PY" - "$WORK/remote.yaml" <<'PY'
import json, sys, time, yaml
from app.config import EternaConfig, RemoteConfig
from app.dialogue import DialogueEngine

cfg = EternaConfig.load("configs/eterna.yaml")
remote = RemoteConfig(**yaml.safe_load(open(sys.argv[1]))["models"]["remote"])
cfg = cfg.model_copy(update={"models": cfg.models.model_copy(update={"backend": "openai", "remote": remote})})
engine = DialogueEngine.from_settings(cfg)
out = []
for text in ["Hello, who are you?", "How many books can a reader borrow at once?"]:
    t0 = time.perf_counter()
    r = engine.say("archivist", text, remember=False)
    out.append({"text": text, "reply": r.text, "route": r.route, "ms": round(1000 * (time.perf_counter() - t0))})
    assert r.text, "empty reply"
print(json.dumps({"vllm_smoke": "ok", "turns": out}, ensure_ascii=False))
PY
