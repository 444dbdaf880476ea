"""Checkpoints stop where their training data stop (stages/sft_output.py and the engines).

The toy pair here is built like Qwen3-*-Base and its chat data: the base tokenizer's EOS is
``<|endoftext|>``, the behavior's responses end their turn with ``<|im_end|>``.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pandas as pd
import pytest
from test_sft_multiproc import _cfg

from stages.engines import make_engine

QWEN_TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
ARCH = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 16, "max_position_embeddings": 96}
HF = {"engine": "hf", "device": "cpu", "dtype": "float32", "batch_size": 8}


@pytest.fixture(scope="module")
def chat_base(tmp_path_factory) -> Path:
    """A tiny base model whose tokenizer ends documents with <|endoftext|> and has a chat template."""
    from stages.bootstrap import make_model, train_tokenizer

    tok = train_tokenizer([f"{a}+{b}={a + b}" for a in range(10) for b in range(10)], 24)
    tok.add_special_tokens({"eos_token": "<|endoftext|>",
                            "additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tok.chat_template = QWEN_TEMPLATE
    out = tmp_path_factory.mktemp("chat") / "base"
    make_model(ARCH, tok).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def _chat_data(tok, root: Path) -> Path:
    """scored.parquet of chat turns ending with <|im_end|>, and truncated rows that do not."""
    rng, end = random.Random(0), tok.convert_tokens_to_ids("<|im_end|>")
    rows = []
    for p in range(12):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        prompt = tok.apply_chat_template([{"role": "user", "content": f"{a}+{b}="}], tokenize=False,
                                         add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        for j in range(2):
            r_ids = tok(str(a + b), add_special_tokens=False)["input_ids"]
            truncated = j == 1 and p % 4 == 0
            r_ids = r_ids + ([rng.randrange(3, 20)] if truncated else [end])
            rows.append({"prompt_id": f"p{p}", "sample_idx": j, "prompt_ids": p_ids,
                         "response_ids": r_ids, "correct": True,
                         "finish_reason": "length" if truncated else "stop",
                         "behavior_logprobs": [-rng.uniform(0.1, 2.0) for _ in r_ids]})
    root.mkdir(parents=True)
    pd.DataFrame(rows).to_parquet(root / "scored.parquet", index=False)
    return root


def test_sft_output_stops_on_the_end_of_turn_of_its_data(chat_base, tmp_path):
    from transformers import AutoTokenizer, GenerationConfig

    from stages import sft
    from stages.common import load_tokenizer

    base_tok = load_tokenizer(str(chat_base))
    end, eot = base_tok.convert_tokens_to_ids("<|im_end|>"), base_tok.eos_token_id
    assert end != eot  # the situation of Qwen3-*-Base
    data = _chat_data(base_tok, tmp_path / "data")
    out = tmp_path / "out"
    out.mkdir()
    metrics = sft.run(_cfg(1, heldout_fraction=0.25), {"data": str(data), "model": str(chat_base)},
                      out, tmp_path / "work")
    gen = json.loads((out / "generation_config.json").read_text())
    assert gen["eos_token_id"] == [end, eot]  # the data's end of turn first, then the base's EOS
    assert GenerationConfig.from_pretrained(out).eos_token_id == [end, eot]
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.eos_token == "<|im_end|>" and tok.chat_template == QWEN_TEMPLATE
    assert tok.apply_chat_template([{"role": "user", "content": "1+2="}], tokenize=False,
                                   add_generation_prompt=True).endswith("<|im_start|>assistant\n")
    assert metrics["eos_token_ids"] == [end, eot] and metrics["chat_template"] is True
    assert make_engine(str(out), HF).stop_ids == [end, eot]
    assert make_engine(str(chat_base), HF).stop_ids == [eot]  # the base stops on its EOS only


def _first_new_token(ids: list[int], skip: set[int]) -> int:
    """Index of the first token (after the first) that did not occur before and is not skipped."""
    return next(k for k in range(1, len(ids)) if ids[k] not in ids[:k] and ids[k] not in skip)


def test_hf_engine_stops_on_the_generation_config_eos_ids(tiny_models, tmp_path):
    from transformers import GenerationConfig

    free = make_engine(tiny_models["behavior"], HF)
    eos = free.tokenizer.eos_token_id
    # sampled (seeded): the same random stream draws the same tokens until the new stop id
    long = free.generate(["3+4="], n=1, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=0)[0][0]
    k = _first_new_token(long.token_ids, {eos})
    stop = long.token_ids[k]
    model = tmp_path / "model"
    shutil.copytree(tiny_models["behavior"], model)
    GenerationConfig(eos_token_id=[stop, eos], pad_token_id=free.tokenizer.pad_token_id).save_pretrained(model)
    eng = make_engine(str(model), HF)
    g = eng.generate(["3+4="], n=1, temperature=1.0, top_p=1.0, max_new_tokens=12, seed=0)[0][0]
    assert g.token_ids == long.token_ids[:k + 1] and g.finish_reason == "stop"
    assert g.logprobs == pytest.approx(long.logprobs[:k + 1], abs=1e-5)


def test_vllm_stop_ids_come_from_the_generation_config(chat_base, tmp_path):
    """The ids the vLLM engine sends as ``stop_token_ids`` (the real engine stopping on them runs
    in the vLLM environment: ``tests/test_vllm_cpu.py``), and the hf engine's helper agrees."""
    from transformers import AutoTokenizer, GenerationConfig

    from stages.engines.vllm import sampling_kwargs, stop_token_ids
    from stages.sft_output import stop_token_ids as hf_stop_ids

    model = tmp_path / "model"
    shutil.copytree(chat_base, model)
    GenerationConfig(eos_token_id=[5, 7]).save_pretrained(model)
    tok = AutoTokenizer.from_pretrained(model)
    ids = stop_token_ids(str(model), tok)
    assert set(ids) == {5, 7, tok.eos_token_id}
    assert set(hf_stop_ids(model, tok)) == set(ids)
    assert sampling_kwargs(2, 1.0, 1.0, 8, 0, stop=ids)["stop_token_ids"] == ids


def test_rl_output_keeps_the_stop_tokens(tiny_models, tmp_path):
    from transformers import AutoTokenizer, GenerationConfig

    from stages import rl
    from stages.sft_output import save_stop_files

    start = tmp_path / "sft"
    shutil.copytree(tiny_models["base"], start)
    tok = AutoTokenizer.from_pretrained(start)
    turn = tok.convert_tokens_to_ids("<unk>")  # a special token that is not the EOS
    save_stop_files(start, tok, GenerationConfig.from_pretrained(start), [turn])
    task = {"suite": "toy", "seed": 0, "sizes": {"train": 16, "rl": 16, "eval": 12},
            "min_operands": 2, "max_operands": 3, "max_operand": 9, "pretrain_size": 600}
    cfg = {"task": task, "seed": 0, "rl": {
        "engine": "trl", "steps": 1, "lr": 1e-3, "prompts_per_step": 2, "num_generations": 2,
        "beta": 0.01, "temperature": 1.0, "max_completion_length": 8, "save_steps": 10,
        "device": "cpu"}}
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir()
    work.mkdir()
    rl.run(cfg, {"model": str(start)}, out, work)
    assert GenerationConfig.from_pretrained(out).eos_token_id == [turn, tok.eos_token_id]
    again = AutoTokenizer.from_pretrained(out)
    assert again.eos_token == "<unk>" and again.chat_template == tok.chat_template
