"""Batched multi-adapter backend (`models.backend: batched`): concurrent sessions' replies are decoded together on one
base model, each row of the batch with its own LoRA adapter.

This is the S-LoRA / Punica idea on a CPU: every adapted linear layer keeps the adapters' low-rank matrices stacked
(slot 0 is "no adapter", zeros), a batch gathers each row's pair once, and a forward pass adds
`bmm(bmm(x, A[row]), B[row])` to the base layer's output. Sessions on different characters then share every forward
pass instead of queueing behind one another (llama.cpp applies a LoRA to a whole context, so it cannot do this).

- Requests from any number of threads go into one queue. A scheduler thread takes the first, gathers what else
  arrives within `batch_window_ms` (up to `max_batch`), and decodes them as one left-padded batch with a KV cache
  (static batching: a request that arrives mid-batch waits for the next one).
- Decoding is every backend's (`app/backends/decoding.py`), row by row: each row its own settings and seed.
- Adapters that are not plain LoRA on linear layers (DoRA, IA3, prompt or prefix tuning, bottleneck adapters,
  rank or alpha patterns) are served by a transformers backend on the same base, with a warning naming them.
"""

from __future__ import annotations

import inspect
import json
import logging
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from app.backends import Generation
from app.backends.decoding import (Decoding, TokenPicker, control_tokens, copy_token_ids, prompt_ids,
                                   stream_token_text)
from app.backends.transformers import Fallback, OwnLoop
from retrieval.errors import AdapterError
from tuning.adapters import check_base, read_adapter_manifest
from tuning.base import load_base, model_fingerprint

log = logging.getLogger("eterna.batching")

_PREFIX = "base_model.model."


def lora_support(path: Path) -> str | None:
    """None when the adapter at `path` is a plain LoRA on linear layers (what the batched layers run), else why not."""
    cfg_path = Path(path) / "adapter_config.json"
    if not cfg_path.is_file():
        return "not a PEFT LoRA (no adapter_config.json)"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    if cfg.get("peft_type") != "LORA":
        return f"its method is {cfg.get('peft_type')}, not LoRA"
    for key, what in (("use_dora", "DoRA"), ("rank_pattern", "a rank pattern"), ("alpha_pattern", "an alpha pattern"),
                      ("modules_to_save", "modules_to_save"), ("lora_bias", "LoRA biases"),
                      ("fan_in_fan_out", "fan_in_fan_out"), ("trainable_token_indices", "trainable tokens")):
        if cfg.get(key):
            return f"it uses {what}"
    return None


class _Rows:
    """The running batch's adapter slot per row, shared by every batched layer (None: no row has an adapter)."""

    def __init__(self):
        self.slots = None  # LongTensor (B,) or None
        self.version = 0

    def set(self, slots) -> None:
        self.slots = slots
        self.version += 1


def _multi_lora_linear(base, rows: _Rows):
    """Wrap an `nn.Linear`: its output plus each row's own LoRA delta (torch is imported lazily, hence the factory)."""
    import torch

    class _Layer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.base, self.rows = base, rows
            self.a: dict[int, torch.Tensor] = {}  # slot -> (in, r)
            self.b: dict[int, torch.Tensor] = {}  # slot -> (r, out), scaling folded in
            self._stack = None
            self._sel, self._sel_version = None, -1

        @property
        def weight(self):  # what code that inspects the layer expects
            return self.base.weight

        def put(self, slot: int, a, b) -> None:
            self.a[slot], self.b[slot] = a, b
            self._stack, self._sel_version = None, -1

        def _stacks(self):
            if self._stack is None:
                n = max(self.a) + 1
                r = max(t.shape[1] for t in self.a.values())
                w = self.base.weight
                a = torch.zeros(n, w.shape[1], r, dtype=w.dtype)
                b = torch.zeros(n, r, w.shape[0], dtype=w.dtype)
                has = torch.zeros(n, dtype=torch.bool)
                for s in self.a:
                    k = self.a[s].shape[1]
                    a[s, :, :k], b[s, :k, :], has[s] = self.a[s], self.b[s], True
                self._stack = (a, b, has)
            return self._stack

        def forward(self, x):
            y = self.base(x)
            slots = self.rows.slots
            if slots is None or not self.a:
                return y
            if self._sel_version != self.rows.version:
                a, b, has = self._stacks()
                slots_here = slots.clamp(max=a.shape[0] - 1) * (slots < a.shape[0])
                self._sel = (a[slots_here], b[slots_here]) if bool(has[slots_here].any()) else None
                self._sel_version = self.rows.version
            if self._sel is None:
                return y
            a, b = self._sel
            return y + torch.bmm(torch.bmm(x.to(a.dtype), a), b).to(y.dtype)

    return _Layer()


@dataclass
class _Request:
    ids: list[int]
    cfg: Decoding
    slot: int
    out: queue.Queue = field(default_factory=queue.Queue)  # token ids, then ("done", seconds) or an exception


class BatchedBackend(OwnLoop):
    name = "batched"

    def __init__(self, model_dir: Path, dtype: str = "bfloat16", *, max_batch: int = 8, window_ms: float = 5.0):
        import torch

        self.model_dir = Path(model_dir)
        self.dtype = dtype
        self.fingerprint = model_fingerprint(self.model_dir)
        self.model, self.tokenizer = load_base(self.model_dir, dtype)
        self.model.eval()
        self.special_tokens = control_tokens(self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None \
            else self.tokenizer.eos_token_id
        self.eos = {self.tokenizer.eos_token_id}
        self.n_ctx = int(getattr(self.model.config, "max_position_embeddings", 0) or 1 << 30)
        self.max_batch, self.window = max(1, int(max_batch)), max(0.0, window_ms) / 1000
        self.adapters: dict[str, Path] = {}
        self._slots: dict[str, int] = {}
        self._layers: dict[str, object] = {}
        self._rows = _Rows()
        self._fallback = Fallback(self.model_dir, self.dtype, log, "the batched backend")
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()  # adding adapters vs running a batch
        self._start_lock = threading.Lock()  # starting the scheduler thread (never waits for a running batch)
        self._worker: threading.Thread | None = None
        self.stats = {"batches": 0, "rows": 0, "max_rows": 0, "steps": 0, "step_rows": 0, "decode_s": 0.0,
                      "prefill_s": 0.0}
        self._torch = torch
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"  # transformers 5 renamed it

    # --- adapters ----------------------------------------------------------------------------------------------
    def add_adapter(self, name: str, path: Path) -> None:
        from safetensors.torch import load_file

        path = Path(path)
        if name in self.adapters:
            if self.adapters[name] == path:
                return
            raise ValueError(f"adapter name {name!r} is taken by {self.adapters[name]}")
        check_base(read_adapter_manifest(path), path, self.fingerprint)
        reason = lora_support(path)
        weights = path / "adapter_model.safetensors"
        if reason is None and not weights.is_file():
            reason = "no adapter_model.safetensors"
        if reason is not None:
            self._fallback.add(name, path, reason)
            self.adapters[name] = path
            return
        cfg = json.loads((path / "adapter_config.json").read_text(encoding="utf-8"))
        r, alpha = int(cfg["r"]), float(cfg["lora_alpha"])
        scale = alpha / (r ** 0.5) if cfg.get("use_rslora") else alpha / r
        state = load_file(str(weights))
        pairs: dict[str, dict[str, object]] = {}
        for key, t in state.items():
            for part in ("lora_A", "lora_B"):
                tail = f".{part}.weight"
                if key.endswith(tail):
                    module = key[: -len(tail)]
                    module = module[len(_PREFIX):] if module.startswith(_PREFIX) else module
                    pairs.setdefault(module, {})[part] = t
                    break
            else:
                raise AdapterError(f"{weights}: unexpected tensor {key!r} for a LoRA; retrain it with `eterna train "
                                   "sft` or set models.backend: transformers")
        torch = self._torch
        with self._lock:
            slot = len(self._slots) + 1
            for module, pair in pairs.items():
                if set(pair) != {"lora_A", "lora_B"}:
                    raise AdapterError(f"{weights}: {module} has only {', '.join(pair)}")
                layer = self._layer(module, weights)
                dt = layer.base.weight.dtype
                layer.put(slot, pair["lora_A"].to(torch.float32).T.contiguous().to(dt),
                          (pair["lora_B"].to(torch.float32) * scale).T.contiguous().to(dt))
            self._slots[name] = slot
            self.adapters[name] = path

    def _layer(self, module: str, weights: Path):
        layer = self._layers.get(module)
        if layer is not None:
            return layer
        parent_name, _, child = module.rpartition(".")
        try:
            parent = self.model.get_submodule(parent_name)
            base = getattr(parent, child)
        except AttributeError:
            raise AdapterError(f"{weights}: the base model has no layer {module!r}; was the adapter trained on "
                               "another architecture?") from None
        if not isinstance(base, self._torch.nn.Linear):
            raise AdapterError(f"{weights}: {module} is a {type(base).__name__}, not a linear layer")
        layer = _multi_lora_linear(base, self._rows)
        setattr(parent, child, layer)
        self._layers[module] = layer
        return layer

    def fallback_adapters(self) -> list[str]:
        return sorted(self._fallback.names)

    def cache_report(self) -> None:
        return None  # no prompt cache: each batch evaluates its prompts whole

    # --- tokens --------------------------------------------------------------------------------------------------
    def count_tokens(self, messages: list[dict]) -> int:
        return len(prompt_ids(self.tokenizer, messages))

    def copy_token_ids(self, text: str) -> list[int]:
        return copy_token_ids(self.tokenizer, text)

    # --- scheduling ----------------------------------------------------------------------------------------------
    def _submit(self, req: _Request) -> None:
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._loop, name="eterna-batcher", daemon=True)
                self._worker.start()
        self._queue.put(req)

    def close(self) -> None:
        """Answer what is queued, then stop the scheduler thread (it holds the backend, and so the model, alive).
        A later request starts a new one."""
        with self._start_lock:
            worker, self._worker = self._worker, None
        if worker is not None and worker.is_alive():
            self._queue.put(None)
            worker.join()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:  # close()
                return
            batch, closing = [first], False
            deadline = time.monotonic() + self.window
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        item = self._queue.get(timeout=left)
                    except queue.Empty:
                        break
                if item is None:
                    closing = True
                    break
                batch.append(item)
            try:
                with self._lock:
                    self._run(batch)
            except BaseException as e:  # every waiting caller gets the error, the loop goes on
                for req in batch:
                    req.out.put(e)
            if closing:
                return

    def _run(self, batch: list[_Request]) -> None:
        torch = self._torch
        n = len(batch)
        self.stats["batches"] += 1
        self.stats["rows"] += n
        self.stats["max_rows"] = max(self.stats["max_rows"], n)
        width = max(len(r.ids) for r in batch)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, r in enumerate(batch):
            ids[i, width - len(r.ids):] = torch.tensor(r.ids)
            mask[i, width - len(r.ids):] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        slots = [r.slot for r in batch]
        self._rows.set(torch.tensor(slots) if any(slots) else None)
        rows = [_RowState(r, self) for r in batch]
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                                 logits_to_keep=1)
                past = getattr(out, self._cache_arg)
                t1 = time.perf_counter()
                self.stats["prefill_s"] += t1 - t0
                for _ in range(max(r.cfg.max_new_tokens for r in batch)):
                    logits = out.logits[:, -1].float()
                    nxt = [row.step(logits[i].numpy()) for i, row in enumerate(rows)]  # numpy views
                    if all(row.done for row in rows):
                        break
                    mask = torch.cat([mask, torch.ones((n, 1), dtype=torch.long)], dim=1)
                    pos = pos[:, -1:] + 1
                    out = self.model(input_ids=torch.tensor(nxt).unsqueeze(1), attention_mask=mask,
                                     position_ids=pos, use_cache=True, **{self._cache_arg: past})
                    past = getattr(out, self._cache_arg)
                    self.stats["steps"] += 1
                    self.stats["step_rows"] += n
                self.stats["decode_s"] += time.perf_counter() - t1
        finally:
            self._rows.set(None)
        seconds = time.perf_counter() - t0
        for r in batch:
            r.out.put(("done", seconds))

    # --- the protocol --------------------------------------------------------------------------------------------
    def _stream(self, messages: list[dict], cfg: Decoding, adapter: str | None) -> Iterator[str | Generation]:
        if adapter is not None and adapter not in self._slots:
            raise KeyError(adapter)
        ids = prompt_ids(self.tokenizer, messages)
        if len(ids) + cfg.max_new_tokens > self.n_ctx:
            raise ValueError(f"prompt of {len(ids)} tokens plus {cfg.max_new_tokens} new ones does not fit the "
                             f"model's context of {self.n_ctx}; shorten the history or generation.max_new_tokens")
        req = _Request(ids=ids, cfg=cfg, slot=self._slots.get(adapter, 0) if adapter else 0)
        self._submit(req)
        done: dict = {}

        def tokens() -> Iterator[int]:  # this row's token ids as the batch decodes them
            while True:
                item = req.out.get()
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, tuple):
                    done["seconds"] = item[1]
                    return
                yield item
        yield from stream_token_text(self.tokenizer, tokens(), len(ids), cfg.max_new_tokens,
                                     lambda: done["seconds"])


class _RowState:
    """One row's decoding (`decoding.TokenPicker`): its settings, its generated tokens, whether it has finished."""

    def __init__(self, req: _Request, backend: BatchedBackend):
        self.req, self.cfg = req, req.cfg
        self.eos, self.pad = backend.eos, backend.pad_id
        self.done = False
        self.picker = TokenPicker(self.cfg, req.ids, backend.copy_token_ids)

    def step(self, logits) -> int:
        """Pick this row's next token from its logits (V,); returns the token to feed (pad once finished). A
        failure ends this row only: its caller gets the exception, the other rows go on."""
        if self.done:
            return self.pad
        try:
            tok = self.picker.pick(logits)
        except Exception as e:
            self.done = True
            self.req.out.put(e)
            return self.pad
        if tok in self.eos:
            self.done = True
            return self.pad
        self.picker.push(tok)
        self.req.out.put(tok)
        if len(self.picker.reply) >= self.cfg.max_new_tokens:
            self.done = True
        return tok


def build(*, model_dir: Path, dtype: str = "bfloat16", max_batch: int = 8, batch_window_ms: float = 5.0,
          **_) -> BatchedBackend:
    """The registry's factory (`models.backend: batched`)."""
    return BatchedBackend(model_dir, dtype, max_batch=max_batch, window_ms=batch_window_ms)
