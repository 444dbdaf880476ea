"""Peak memory of held-out NLL, analysis KL and hf scoring at a Qwen3 vocabulary (issue 12).

    python benchmarks/memory_logprobs.py                      # T = 1024, 2048, 8192 (~6 min)
    python benchmarks/memory_logprobs.py --seqs 1024 2048 --before-seqs 1024

One sequence of T tokens (the first quarter prompt, the rest response) through a Qwen3 causal LM
with V = 151,936 and a tiny body (1 layer, hidden 64), so that the vocabulary dominates. Every
variant runs in a fresh subprocess; the numbers are that child's peak RSS (``ru_maxrss``) and the
peak above its RSS just before the call (models and inputs built), i.e. every temporary of the
call, whoever allocates it. Variants:

* ``reference``: the chunked label-log-prob path, i.e. the model's ``[1, T, V]`` logits in its
  dtype, then ``token_logprobs`` (chunked). The bar: each new path must stay within 1.3× of it.
* ``nll``: ``stages.sft_trainer.mean_nll`` (the sft stage's held-out NLL; the trained model is
  fp32 there, and on CPU no autocast);
  ``nll before``: the code it replaces (fp32 logits, then ``token_logprobs``).
* ``kl``: ``stages.analysis.forward_kl`` on two models in their dtype;
  ``kl before``: two fp32 models, ``.logits[:, :-1]`` of each into ``vocab_kl`` (the slices are
  copied by its flattening).
* ``score``: ``HFEngine.score``; ``score before``: ``.logits[:, :-1]`` into ``token_logprobs``.

The "before" functions are copies of the code at commit ecb2c6d (before issue 12), kept here
only to measure them. With one sequence per batch, ``logits[:, :-1]`` happens to be contiguous
and is not copied: the "before" numbers are a lower bound for the batches the stages ran
(analysis 8, hf scoring 64 sequences), where the slice is copied once more. Their cost grows with T × V (fp32 logits: 0.6 GB per 1,024 positions; the
analysis held four such tensors), so they are run at small T only (``--before-seqs``) and the
table extrapolates them linearly to the largest T; this machine cannot hold the 20 GB they need
at T = 8,192. Models are bf16 (the GPU setting: ``dtype: auto``), except where the code forces
fp32.

Measured on our 2-core CPU machine (busy; peaks above the RSS before the call, as ratios to the
reference of the same run): at T = 8,192 the reference needs 2.7 GB, held-out NLL 0.12×,
analysis KL 0.26×, hf scoring 0.14× (the new paths are flat in T: one ``[chunk, V]`` block). The
code before: NLL 1.28× / 1.52× and KL 3.1× / 3.4× at T = 1,024 / 2,048, extrapolated to 1.8×
and 3.8× (10 GB) at T = 8,192; hf scoring 1.0× (a batch of one sequence, see above).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

import psutil
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VOCAB = 151_936
NEW = ["reference", "nll", "kl", "score"]
BEFORE = ["nll before", "kl before", "score before"]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _model(dtype: torch.dtype, seed: int):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen3Config(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, head_dim=32,
                      max_position_embeddings=16_384, tie_word_embeddings=False)
    return Qwen3ForCausalLM(cfg).to(dtype).eval()


# ----------------------------------------------------------- the code before issue 12 (ecb2c6d)

@torch.no_grad()
def nll_before(model, ids, attn, labels, mask) -> float:  # stages/sft.py mean_nll
    from stages.objectives import token_logprobs

    logits = model(input_ids=ids, attention_mask=attn).logits
    lp = token_logprobs(logits, labels)
    return float(-(lp * mask).sum()) / float(mask.sum())


@torch.no_grad()
def kl_before(reference, model, ids, attn, mask) -> float:  # stages/analysis.py forward_kl
    from stages.objectives import vocab_kl

    ref_logits = reference(input_ids=ids, attention_mask=attn).logits[:, :-1]
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
    kl = vocab_kl(ref_logits, logits)
    return float((kl * mask[:, :-1]).sum() / mask.sum())


@torch.no_grad()
def score_before(model, ids, attn) -> list[float]:  # stages/engines/hf.py score, topk = 0
    from stages.objectives import token_logprobs

    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
    return token_logprobs(logits, ids[:, 1:])[0].tolist()


# ------------------------------------------------------------------------------ one variant

def _child(variant: str, seq: int) -> dict:
    """Runs in its own process: builds the model(s) and inputs, runs the variant once."""
    import pandas as pd

    from stages import analysis
    from stages.engines.hf import HFEngine
    from stages.objectives import token_logprobs
    from stages.sft_data import Collator, shifted_labels
    from stages.sft_trainer import mean_nll

    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (1, seq), generator=g)
    attn = torch.ones_like(ids)
    p = seq // 4
    labels = shifted_labels(ids)
    mask = torch.zeros(1, seq)
    mask[0, p - 1:seq - 1] = 1
    row = {"prompt_ids": ids[0, :p].tolist(), "response_ids": ids[0, p:].tolist(),
           "behavior_logprobs": [0.0] * (seq - p), "correct": True}
    fp32 = variant in ("nll", "nll before", "kl before")
    model = _model(torch.float32 if fp32 else torch.bfloat16, 0)
    other = _model(torch.float32 if fp32 else torch.bfloat16, 1) if variant.startswith("kl") else None
    engine = HFEngine.__new__(HFEngine)  # the engine's score() around a model built here
    engine.model, engine.device, engine.batch_size = model, "cpu", 1
    engine.tokenizer = type("Tok", (), {"pad_token_id": 0})()
    calls = {
        "reference": lambda: float(token_logprobs(model(input_ids=ids, attention_mask=attn).logits,
                                                  labels.masked_fill(mask == 0, -100)).sum()),
        "nll": lambda: mean_nll(model, [row], Collator(0), 1, "cpu"),
        "nll before": lambda: nll_before(model, ids, attn, labels, mask),
        "kl": lambda: float(analysis.forward_kl(other, model, pd.DataFrame([row]), 0, 1, "cpu")[0]),
        "kl before": lambda: kl_before(other, model, ids, attn, mask),
        "score": lambda: sum(engine.score([row["prompt_ids"]], [row["response_ids"]])[0].logprobs),
        "score before": lambda: sum(score_before(model, ids, attn)[p - 1:]),
    }
    before = psutil.Process().memory_info().rss / 2**20
    built = _peak_mib()
    with torch.no_grad():
        value = calls[variant]()
    peak = _peak_mib()
    return {"variant": variant, "seq": seq, "peak_mib": peak, "above_mib": peak - before,
            "build_peak_mib": built, "value": value}


def _run(variant: str, seq: int) -> dict:
    cmd = [sys.executable, __file__, "--child", variant, str(seq)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        return {"variant": variant, "seq": seq, "error": res.stderr.strip().splitlines()[-1:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:,.0f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seqs", type=int, nargs="+", default=[1024, 2048, 8192])
    ap.add_argument("--before-seqs", type=int, nargs="+", default=[1024, 2048])
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "SEQ"))
    args = ap.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]))))
        return
    rows = [_run(v, t) for t in args.seqs for v in NEW]
    rows += [_run(v, t) for t in args.before_seqs for v in BEFORE]
    ref = {r["seq"]: r["above_mib"] for r in rows if r["variant"] == "reference" and "error" not in r}
    print(f"V = {VOCAB:,}, bf16 models unless fp32 is forced; peak above the RSS before the call "
          "(MiB), and its ratio to the reference at the same T\n")
    print("| variant | T | peak RSS (MiB) | peak above start (MiB) | / reference | value |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        if "error" in r:
            print(f"| {r['variant']} | {r['seq']} | failed: {r['error']} | | | |")
            continue
        ratio = r["above_mib"] / ref[r["seq"]] if r["seq"] in ref else None
        print(f"| {r['variant']} | {r['seq']:,} | {_fmt(r['peak_mib'])} | {_fmt(r['above_mib'])} | "
              f"{'—' if ratio is None else f'{ratio:.2f}×'} | {r['value']:.4g} |")
    top = max(args.seqs)
    print(f"\nExtrapolated to T = {top:,} (linear in T from the two largest measured T):\n")
    for v in BEFORE:
        pts = sorted((r["seq"], r["above_mib"]) for r in rows if r["variant"] == v and "error" not in r)
        if len(pts) >= 2 and top in ref:
            (t0, m0), (t1, m1) = pts[-2], pts[-1]
            est = m1 + (m1 - m0) / (t1 - t0) * (top - t1)
            print(f"- {v}: ~{est:,.0f} MiB above start, {est / ref[top]:.1f}× the reference")
    for v in NEW[1:]:
        got = [r for r in rows if r["variant"] == v and r["seq"] == top and "error" not in r]
        if got and top in ref:
            ratio = got[0]["above_mib"] / ref[top]
            print(f"- {v} at T = {top:,}: {ratio:.2f}× the reference "
                  f"({'within' if ratio <= 1.3 else 'ABOVE'} 1.3×)")


if __name__ == "__main__":
    main()
