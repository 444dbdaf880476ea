"""Objectives benchmark (issue 3): peak memory of token_logprobs, step time of every objective.

    python benchmarks/objectives.py            # both tables, markdown, < 2 min
    python benchmarks/objectives.py --skip-memory --repeats 40

1. Peak memory: label log-probs for one sequence of T = 4096 over a Qwen3 vocabulary (151,936)
   from bf16 logits on the CPU, chunked ``token_logprobs`` against the naive
   ``logits.float().log_softmax(-1).gather(...)``, forward only and forward + backward. Each
   variant runs in a fresh subprocess; the number is the process's peak RSS (``ru_maxrss``) minus
   its RSS once the logits (and, for the backward, nothing else) exist, so it counts every
   temporary the variant touches, whoever allocates it.
2. Step time: one optimizer step (forward, objective, backward, AdamW) per objective on the same
   tiny Qwen3 and the same batch, repeats interleaved across objectives in a shuffled order,
   reported as the median over rounds of (step / sft step of the same round). ``objective ms``
   is the objective function plus the reduction alone (forward only): the only code that differs
   between sft and the PEAR variants, whose backward and optimizer step are identical; its excess
   over sft's, as a share of the sft step, is the noise-free overhead of an objective.
"""
from __future__ import annotations

import argparse
import copy
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stages.objectives import REGISTRY, TokenBatch, reduce_loss, token_logprobs  # noqa: E402

MEM_VARIANTS = ["naive fwd", "chunked fwd", "naive fwd+bwd", "chunked fwd+bwd"]


# --------------------------------------------------------------------------- memory


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB


def _mem_child(variant: str, seq: int, vocab: int) -> dict:
    """Runs in its own process: builds bf16 logits, then the variant; prints a JSON line."""
    torch.manual_seed(0)
    backward = variant.endswith("bwd")
    # tile a small random block: no fp32 temporary while building the logits
    block = torch.randn(64, vocab).to(torch.bfloat16)
    logits = block.repeat(seq // 64, 1).view(1, seq, vocab).requires_grad_(backward)
    labels = torch.randint(0, vocab, (1, seq))
    base = psutil.Process().memory_info().rss / 2**20
    assert _peak_mib() <= base + 64, "logits construction left a higher peak than its RSS"
    t0 = time.perf_counter()
    if variant.startswith("naive"):
        out = logits.float().log_softmax(-1).gather(-1, labels[..., None])[..., 0]
    else:
        out = token_logprobs(logits, labels)
    if backward:
        out.sum().backward()
    secs = time.perf_counter() - t0
    return {"variant": variant, "peak_mib": _peak_mib() - base, "secs": secs,
            "logits_mib": logits.numel() * 2 / 2**20}


def memory_table(seq: int, vocab: int) -> str:
    rows = []
    for variant in MEM_VARIANTS:
        cmd = [sys.executable, __file__, "--_mem-child", variant, "--seq", str(seq),
               "--vocab", str(vocab)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    lines = [f"Label log-probs, bf16 logits [1, {seq}, {vocab}] "
             f"({rows[0]['logits_mib']:.0f} MiB), CPU, {torch.get_num_threads()} threads",
             "", "| variant | peak RSS above the logits (MiB) | × logits | time (s) |",
             "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['peak_mib']:.0f} | "
                     f"{r['peak_mib'] / r['logits_mib']:.2f} | {r['secs']:.2f} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- step time


def _tiny_qwen3(vocab: int, seed: int):
    from transformers import Qwen3Config, Qwen3ForCausalLM
    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=vocab, hidden_size=128, intermediate_size=384,
                      num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                      head_dim=32, max_position_embeddings=4096, tie_word_embeddings=False)
    return Qwen3ForCausalLM(cfg).float()


def _data(behavior, batch: int, seq: int, vocab: int, prompt: int, topk: int):
    """Right-padded rows: prompt, then a response of varying length; labels shifted by one."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab, (batch, seq), generator=g)
    attn = torch.ones(batch, seq, dtype=torch.long)
    mask = torch.zeros(batch, seq)
    for i in range(batch):
        end = seq - i * (seq - prompt) // (2 * batch)        # ragged lengths
        attn[i, end:] = 0
        mask[i, prompt - 1:end - 1] = 1                       # logits[t] predicts ids[t + 1]
    labels = torch.full_like(ids, -100)
    labels[:, :-1] = ids[:, 1:]
    labels[mask == 0] = -100
    with torch.no_grad():
        b_logits = behavior(input_ids=ids, attention_mask=attn).logits
        logp_beta = token_logprobs(b_logits, labels)
        top = b_logits.float().log_softmax(-1).topk(topk, dim=-1)
    return dict(ids=ids, attn=attn, labels=labels, mask=mask, logp_beta=logp_beta,
                topk_ids=top.indices, topk_logp=top.values)


def _step(name, params, model, ref, opt, d) -> float:
    obj = REGISTRY[name]
    logits = model(input_ids=d["ids"], attention_mask=d["attn"]).logits
    logp = token_logprobs(logits, d["labels"])
    ref_logits = None
    if obj.needs_ref:
        with torch.no_grad():
            ref_logits = ref(input_ids=d["ids"], attention_mask=d["attn"]).logits
    correct = torch.ones(len(logp), dtype=torch.bool)
    if obj.uses_negatives:
        correct[len(logp) // 2:] = False
    batch = TokenBatch(logp=logp, logp_beta=d["logp_beta"], mask=d["mask"], correct=correct,
                       logits=logits if obj.needs_logits else None, ref_logits=ref_logits,
                       beta_topk_ids=d["topk_ids"] if obj.behavior_topk else None,
                       beta_topk_logp=d["topk_logp"] if obj.behavior_topk else None)
    t0 = time.perf_counter()
    loss = reduce_loss(*obj.fn(batch, **params), batch.mask)
    t_obj = time.perf_counter() - t0
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return t_obj


def step_table(repeats: int, warmup: int, batch: int, seq: int, vocab: int) -> str:
    from omegaconf import OmegaConf
    model = _tiny_qwen3(vocab, seed=0)
    ref = copy.deepcopy(model).eval().requires_grad_(False)        # frozen base for sft_kl
    d = _data(_tiny_qwen3(vocab, seed=1).eval(), batch, seq, vocab, prompt=seq // 8, topk=20)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    params = {n: OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "objective" / f"{n}.yaml")
                                        .params) for n in REGISTRY}
    names = list(REGISTRY)
    times = {n: [] for n in names}
    obj_times = {n: [] for n in names}
    rng = random.Random(0)
    for r in range(warmup + repeats):
        rng.shuffle(names)
        for n in names:
            t0 = time.perf_counter()
            t_obj = _step(n, params[n], model, ref, opt, d)
            if r >= warmup:
                times[n].append(time.perf_counter() - t0)
                obj_times[n].append(t_obj)
    med = {n: statistics.median(v) for n, v in times.items()}
    obj_med = {n: statistics.median(v) for n, v in obj_times.items()}
    # ratio to the sft step of the same round, then the median: robust to load drifting
    ratio = {n: statistics.median(a / b for a, b in zip(times[n], times["sft"])) for n in names}
    n_tok = int(d["mask"].sum())
    lines = [f"One AdamW step, tiny Qwen3 (4 layers, hidden 128, vocab {vocab}), batch {batch} × "
             f"{seq} tokens ({n_tok} response tokens), CPU, {torch.get_num_threads()} threads, "
             f"median of {repeats} interleaved repeats", "",
             "| objective | step ms | × sft (paired median) | objective ms | objective − sft "
             "objective, % of sft step |", "|---|---:|---:|---:|---:|"]
    for n in REGISTRY:
        extra = 100 * (obj_med[n] - obj_med["sft"]) / med["sft"]
        lines.append(f"| {n} | {med[n] * 1e3:.1f} | {ratio[n]:.3f} | {obj_med[n] * 1e3:.2f} | "
                     f"{extra:+.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seq", type=int, default=4096, help="memory table: sequence length")
    ap.add_argument("--vocab", type=int, default=151_936, help="memory table: vocabulary")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--step-batch", type=int, default=4)
    ap.add_argument("--step-seq", type=int, default=128)
    ap.add_argument("--step-vocab", type=int, default=4096)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--skip-steps", action="store_true")
    ap.add_argument("--_mem-child", dest="mem_child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.mem_child:
        print(json.dumps(_mem_child(args.mem_child, args.seq, args.vocab)))
        return
    if not args.skip_memory:
        print(memory_table(args.seq, args.vocab), end="\n\n", flush=True)
    if not args.skip_steps:
        print(step_table(args.repeats, args.warmup, args.step_batch, args.step_seq,
                         args.step_vocab))


if __name__ == "__main__":
    main()
