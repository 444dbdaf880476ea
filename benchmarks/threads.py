"""Threads per stage on a small CPU machine: the bootstrap stage's training step at 1 and 2 torch
threads, alone and next to a competing 1-thread process (another stage, as Ray runs two at once
on 2 cores).

    python benchmarks/threads.py [--steps 10]

Prints wall and CPU seconds per step and the ratios against 1 thread alone measured in the same
run. What it showed on a loaded 2-core machine: at 2 threads each step burned ~9x the CPU of a
1-thread step (OpenMP's worker threads spin while waiting for a descheduled peer), which is how a
stage can run an order of magnitude slower inside a busy Ray node than in a quiet shell. Hence the
rule in ``pipeline/execute.py``: a stage's torch gets exactly the CPUs its Ray task declares.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

STEP = r"""
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[1]))
from transformers import Qwen3Config, Qwen3ForCausalLM
torch.manual_seed(0)
m = Qwen3ForCausalLM(Qwen3Config(vocab_size=48, hidden_size=128, intermediate_size=384,
    num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
    max_position_embeddings=128))
opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
ids = torch.randint(0, 48, (64, 40))
steps = int(sys.argv[2])
for i in range(steps + 2):
    if i == 2:
        t, c = time.time(), time.process_time()
    loss = m(input_ids=ids, labels=ids).loss
    opt.zero_grad(); loss.backward(); opt.step()
print(json.dumps({"wall": (time.time() - t) / steps, "cpu": (time.process_time() - c) / steps}))
"""


def measure(threads: int, steps: int, competitor: bool) -> dict:
    other = None
    if competitor:  # a 1-thread process doing the same work for longer, started first
        other = subprocess.Popen([sys.executable, "-c", STEP, "1", str(steps * 4)],
                                 stdout=subprocess.DEVNULL)
        time.sleep(5)
    try:
        out = subprocess.run([sys.executable, "-c", STEP, str(threads), str(steps)],
                             capture_output=True, text=True, check=True).stdout
    finally:
        if other is not None:
            other.kill()
            other.wait()
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    a = ap.parse_args()
    rows = [(t, c, measure(t, a.steps, c)) for c in (False, True) for t in (1, 2)]
    base = rows[0][2]
    print(f"{'threads':>7} {'competitor':>10} {'wall s/step':>11} {'cpu s/step':>10} "
          f"{'wall ratio':>10} {'cpu ratio':>9}")
    for t, c, r in rows:
        print(f"{t:>7} {str(c):>10} {r['wall']:>11.3f} {r['cpu']:>10.3f} "
              f"{r['wall'] / base['wall']:>10.2f} {r['cpu'] / base['cpu']:>9.2f}")


if __name__ == "__main__":
    main()
