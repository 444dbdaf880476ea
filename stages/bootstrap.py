"""Bootstrap the offline toy world: a tokenizer and two tiny Qwen3 models trained from scratch.

Real experiments name hub or local models; this stage exists so that the whole study runs on a
laptop CPU with no download. It

1. trains a BPE tokenizer (``tokenizers``; digits kept as single tokens) on solver traces of the
   task's ``pretrain`` items, which never overlap the train/rl/eval splits;
2. trains a weak *base* policy (few steps, clean traces) and a stronger *behavior* policy (more
   steps, traces with occasional self-corrections ``8!9``) as ``Qwen3ForCausalLM`` from scratch,
   loss on the completion tokens only;
3. saves both as ordinary Hugging Face model dirs (config, safetensors, tokenizer with a chat
   template) under ``out/base`` and ``out/behavior``.

Both models share the tokenizer, as PEAR's ratios need. Resume: a finished model is kept in
``work/`` and not retrained after a crash.
"""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import torch

from stages.common import note, progress, seed_everything
from verifiers import build_suite
from verifiers.toy import solve

CHAT_TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"


def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "</s>", "<unk>"]
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Digits(individual_digits=True)
    tk.decoder = decoders.Fuse()
    tk.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                                      show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", eos_token="</s>",
                                  unk_token="<unk>", padding_side="left")
    tok.chat_template = CHAT_TEMPLATE
    return tok


def make_model(arch: dict, tok):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id,
                         tie_word_embeddings=True, **arch)
    return Qwen3ForCausalLM(config)


def encode_pairs(tok, pairs: list[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    out = []
    for prompt, completion in pairs:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        c = tok(completion, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        out.append((p, c))
    return out


def _batch(rows, pad_id: int):
    width = max(len(p) + len(c) for p, c in rows)
    ids = torch.full((len(rows), width), pad_id)
    labels = torch.full((len(rows), width), -100)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (p, c) in enumerate(rows):
        seq = p + c
        ids[i, :len(seq)] = torch.tensor(seq)
        labels[i, len(p):len(seq)] = torch.tensor(c)
        attn[i, :len(seq)] = 1
    return ids, labels, attn


def train_lm(model, rows, steps: int, lr: float, batch_size: int, seed: int, desc: str) -> list[float]:
    """Plain AdamW loop with linear warm-up; loss on completion tokens only."""
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm))
    model.train()
    losses = []
    bar = progress(total=steps, desc=desc, unit="step")
    for _ in range(steps):
        ids, labels, attn = _batch(rng.sample(rows, batch_size), model.config.pad_token_id)
        loss = model(input_ids=ids, attention_mask=attn, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.update(1)
    bar.close()
    model.eval()
    return losses


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    b, seed = cfg["bootstrap"], int(cfg["seed"])
    suite = build_suite(cfg["task"])
    if not hasattr(suite, "pretrain_items"):
        raise ValueError(f"bootstrap needs a task with solver traces (task=toy), got {suite.name!r};"
                         " real experiments name model.base / model.behavior instead")
    items = suite.pretrain_items()
    rng = random.Random(seed)
    clean = [(it.prompt, solve(it.prompt)) for it in items]
    noisy = [(it.prompt, solve(it.prompt, rng, float(b["behavior"]["p_correction"]))) for it in items]
    tok = train_tokenizer([p + c for p, c in clean + noisy], int(b["vocab_size"]))
    metrics: dict = {"vocab_size": len(tok), "pretrain_items": len(items)}
    for role, pairs in (("base", clean), ("behavior", noisy)):
        done = Path(work) / role
        if (done / "config.json").is_file():
            note(f"resumed: the {role} model was trained before")
        else:
            seed_everything(seed + (role == "behavior"))
            model = make_model(dict(b["arch"]), tok)
            r = b[role]
            losses = train_lm(model, encode_pairs(tok, pairs), int(r["steps"]), float(r["lr"]),
                              int(b["batch_size"]), seed, f"bootstrap {role}")
            tmp = Path(work) / f".{role}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / "losses.txt").write_text("\n".join(f"{x:.5f}" for x in losses))
            tmp.rename(done)
        shutil.copytree(done, Path(out) / role)
        losses = [float(x) for x in (done / "losses.txt").read_text().split()]
        metrics[f"{role}_final_loss"] = sum(losses[-10:]) / len(losses[-10:])
        metrics[f"{role}_steps"] = len(losses)
    metrics["params"] = sum(p.numel() for p in make_model(dict(b["arch"]), tok).parameters())
    return metrics
