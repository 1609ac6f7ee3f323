"""tuning/speed.py: the compact LM head trains on the same loss (reply tokens only) as TRL's CPU path, and the
training settings are restored afterwards. Real TRL trainer, real tiny Llama, real SmolLM2 tokenizer."""

import math

import pytest
import torch

from tests.fixtures_data import STYLE
from tuning.speed import cpu_training, physical_cores, train_speed, use_bf16

SYSTEM = "You are the Warden of the gate."


@pytest.fixture(scope="module")
def trainer(tiny_llm_dir, tmp_path_factory):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from tuning.artifact import load_for_training
    from tuning.data import to_prompt_completion
    from tuning.methods import get_method

    method = get_method("lora")
    model, tok, peft_config = load_for_training(tiny_llm_dir, method, method.parse({"r": 4, "dropout": 0.0}), 0)
    args = SFTConfig(output_dir=str(tmp_path_factory.mktemp("trainer")), use_cpu=True, bf16=False,
                     gradient_checkpointing=False, per_device_train_batch_size=4, max_steps=2, logging_steps=1,
                     learning_rate=1e-3, save_strategy="no", report_to="none", disable_tqdm=True,
                     train_sampling_strategy="group_by_length")
    data = Dataset.from_list(to_prompt_completion([x["messages"] for x in STYLE], SYSTEM))
    return SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok, peft_config=peft_config)


def _loss_and_grads(trainer, batch):
    model = trainer.model
    model.zero_grad()
    loss = trainer.compute_loss(model, dict(batch))
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def test_compact_head_same_loss_and_gradients_on_reply_tokens_only(trainer):
    batch = next(iter(trainer.get_train_dataloader()))
    labels = batch["labels"]  # (B, T): -100 on the system turn, the user turn and padding
    tok = trainer.processing_class
    for ids, lab in zip(batch["input_ids"], labels):
        kept = tok.decode(ids[lab != -100])
        assert "Move along, reader." in kept and "Warden" not in kept and "user" not in kept
    plain_loss, plain_grads = _loss_and_grads(trainer, batch)
    with cpu_training():
        from trl.trainer import utils as trl_utils

        assert trl_utils._use_triton(torch.device("cpu"))  # the compact path is on for this block only
        compact_loss, compact_grads = _loss_and_grads(trainer, batch)
    assert not trl_utils._use_triton(torch.device("cpu"))
    # Reference: the model's own logits, cross-entropy over the shifted reply labels only
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                            ignore_index=-100)
    assert torch.allclose(compact_loss, plain_loss, atol=1e-5) and torch.allclose(compact_loss, ref, atol=1e-4)
    assert plain_grads.keys() == compact_grads.keys() and plain_grads
    for name, g in plain_grads.items():
        assert torch.allclose(g, compact_grads[name], atol=1e-6, rtol=1e-4), name


def test_training_records_speed_and_restores_threads(trainer, monkeypatch):
    threads = torch.get_num_threads()
    other = physical_cores() + 1  # a count cpu_training must change (and later restore)
    try:
        torch.set_num_threads(other)
        monkeypatch.setenv("OMP_NUM_THREADS", str(other))  # the operator chose: left alone
        with cpu_training():
            assert torch.get_num_threads() == other
        monkeypatch.delenv("OMP_NUM_THREADS")  # nobody chose: one thread per physical core
        with cpu_training():
            assert torch.get_num_threads() == physical_cores()
            result = trainer.train()
        assert torch.get_num_threads() == other
    finally:
        torch.set_num_threads(threads)
    speed = train_speed(trainer, result)
    assert speed["train_tokens"] > 0 and speed["train_seconds"] > 0
    assert math.isclose(speed["tokens_per_second"], speed["train_tokens"] / speed["train_seconds"], rel_tol=0.05)



def test_bf16_auto_is_decided_by_the_machine_that_trains():
    """`auto` trains in bf16 only where the CPU computes it natively (emulated bf16 was ~10x slower on an AVX2
    machine); true and false are kept as written."""
    from pathlib import Path

    from retrieval.embeddings import native_bf16

    assert use_bf16(True) is True and use_bf16(False) is False
    assert use_bf16("auto") is native_bf16()
    flags = set(Path("/proc/cpuinfo").read_text().split())
    if not flags & {"avx512_bf16", "amx_bf16"}:  # this CPU emulates bf16: auto must train in fp32
        assert use_bf16("auto") is False
