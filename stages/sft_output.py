"""Stop tokens of a trained model directory: it stops where its training responses stopped.

A base model (e.g. Qwen3-*-Base) ends its documents with ``<|endoftext|>`` while the behavior
data end each turn with ``<|im_end|>``. A checkpoint that kept only the base's EOS would, in eval
and in RL rollouts, run past the end of the turn to the length limit, and the verifiers would
read the answer of a hallucinated continuation. So an SFT output directory carries (and an RL
output directory keeps):

* ``generation_config.json`` whose ``eos_token_id`` lists the end-of-turn ids the training
  responses end with (``stages.sft_data.turn_end_ids``), then the base's own EOS ids. This is
  what every consumer reads: transformers' ``generate`` stops on any of them, TRL's
  ``GRPOTrainer`` takes ``model.generation_config.eos_token_id`` plus the tokenizer's EOS, vLLM
  (and so verl's vLLM rollouts, which load the actor's HF directory) adds the generation
  config's EOS ids to every request's stop ids, and our engines pass the same list
  (:func:`stop_token_ids`).
* the tokenizer with its chat template and, as Qwen3's chat models ship it, ``eos_token`` set to
  the end-of-turn token (the most frequent one).

Deviation: the chat template is the base tokenizer's. The behavior's prompts were built with the
behavior tokenizer's template; for one model family (which the sft stage requires: one
vocabulary) they are the same file. A base tokenizer without any template is reported in the
stage's metrics (``chat_template: false``).
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any


def eos_list(value: Any) -> list[int]:
    """``eos_token_id`` of a generation config (None, an int or a list) as a list."""
    if value is None:
        return []
    return [int(v) for v in value] if isinstance(value, (list, tuple)) else [int(value)]


def _unique(ids: list[int]) -> list[int]:
    return list(dict.fromkeys(int(i) for i in ids if i is not None))


def stop_token_ids(model: str | Path, tokenizer: Any) -> list[int]:
    """The ids generation from ``model`` must stop on: its generation config's EOS ids (when the
    directory has one), then the tokenizer's EOS."""
    from transformers import GenerationConfig

    try:
        ids = eos_list(GenerationConfig.from_pretrained(str(model)).eos_token_id)
    except OSError:  # no generation_config.json: the tokenizer's EOS only
        ids = []
    return _unique(ids + [tokenizer.eos_token_id])


def save_stop_files(out: Path, tokenizer: Any, generation_config: Any, turn_ids: list[int]) -> dict:
    """Write ``generation_config.json`` (EOS ids = ``turn_ids`` then the config's own and the
    tokenizer's EOS) and the tokenizer (EOS = the first of ``turn_ids``) into ``out``.

    ``generation_config`` is copied, not changed. Returns what was written, for the metrics.
    """
    gen = copy.deepcopy(generation_config)
    ids = _unique(list(turn_ids) + eos_list(gen.eos_token_id) + [tokenizer.eos_token_id])
    gen.eos_token_id = ids if len(ids) > 1 else ids[0]
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    gen.save_pretrained(str(out))
    tok = copy.deepcopy(tokenizer)
    if turn_ids and int(turn_ids[0]) != tok.eos_token_id:
        tok.eos_token = tok.convert_ids_to_tokens(int(turn_ids[0]))
    tok.save_pretrained(str(out))
    return {"eos_token_ids": ids, "eos_token": tok.eos_token,
            "chat_template": bool(getattr(tok, "chat_template", None))}
