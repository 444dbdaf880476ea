#!/usr/bin/env bash
# What to run on a lent GPU machine (issue 6): the toy world's stages with the transformers
# engines and the SFT stage on CUDA, with timings, plus the same stages on CPU in the same call
# for a ratio on the same machine.
#
# A lent GPU machine without registry access has torch+CUDA, transformers, accelerate, but no vLLM, no verl,
# no Ray/Hydra guaranteed and no package registry, so this calls the stage functions directly
# (the run() of each stages/*.py, as the tests do) with configs read from conf/ (toy task, toy model,
# sampler=hf, objective, and the overlay EXPERIMENT, default smoke). The rl stage runs only if trl imports.
#
# NOT YET RUN ON A GPU: the session that wrote it was lent none. It was run here with DEVICE=cpu.
#
#   bash scripts/gpu_smoke.sh                         # cuda; results under $OUT (./gpu_smoke)
#   EXPERIMENT=toy bash scripts/gpu_smoke.sh          # the default toy sizes (minutes on CPU)
#   COMPARE_CPU=0 DEVICE=cpu bash scripts/gpu_smoke.sh
# Output: $OUT/timings.json ({stage: seconds, metrics}) and a table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
export OUT="${OUT:-gpu_smoke}" DEVICE="${DEVICE:-cuda}" EXPERIMENT="${EXPERIMENT:-smoke}"
export COMPARE_CPU="${COMPARE_CPU:-1}" OBJECTIVE="${OBJECTIVE:-pear_token}"
PYTHON="${PYTHON:-python}"
export TOKENIZERS_PARALLELISM=false WANDB_MODE=disabled
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true

"$PYTHON" - <<'EOF'
import importlib, json, os, shutil, sys, time
from pathlib import Path

import yaml

sys.path.insert(0, os.getcwd())
out, dev, exp = Path(os.environ["OUT"]), os.environ["DEVICE"], os.environ["EXPERIMENT"]
conf = Path("conf")


def load(p):
    return yaml.safe_load((conf / p).read_text()) or {}


def merge(a, b):
    out = dict(a)
    for k, v in (b or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


import torch
import transformers
print(f"python {sys.version.split()[0]}  torch {torch.__version__}  cuda {torch.version.cuda}  "
      f"available {torch.cuda.is_available()}  transformers {transformers.__version__}")
if dev.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("DEVICE=cuda but torch sees no GPU")
for mod in ("pandas", "pyarrow", "accelerate", "trl", "filelock", "omegaconf", "ray"):
    try:
        importlib.import_module(mod)
    except ImportError as e:
        print(f"missing (stages needing it are skipped): {mod}: {e}")

top, over = load("config.yaml"), load(f"experiment/{exp}.yaml")
task = merge(load("task/toy.yaml"), over.get("task"))
model = merge(load("model/toy.yaml"), over.get("model"))
objective = load(f"objective/{os.environ['OBJECTIVE']}.yaml")
sections = {k: merge(top.get(k, {}), over.get(k)) for k in ("sample", "verify", "score")}
sft = merge(load("sft/default.yaml"), over.get("sft"))
ev = merge(load("eval/default.yaml"), over.get("eval"))
rl = merge(load("rl/trl.yaml"), over.get("rl"))
seed = 0


def engine(d):
    return merge(load("sampler/hf.yaml"), {"device": d, "workers": 1})


timings = {}


def stage(name, cfg, inputs, tag):
    from stages import load as load_stage

    dest, work = out / tag, out / f".work-{tag}"
    for p in (dest, work):
        shutil.rmtree(p, ignore_errors=True)
        p.mkdir(parents=True)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.time()
    metrics = load_stage(name).run(cfg, inputs, dest, work) or {}
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    secs = time.time() - t
    peak = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    timings[tag] = {"seconds": round(secs, 2), "peak_cuda_mib": peak, "metrics": metrics}
    print(f"{tag:<22} {secs:8.1f} s", flush=True)
    return str(dest)


out.mkdir(parents=True, exist_ok=True)
boot = stage("bootstrap", {"task": task, "bootstrap": model["bootstrap"], "seed": seed}, {}, "bootstrap")
base, behavior = f"{boot}/base", f"{boot}/behavior"
devices = [dev] + (["cpu"] if os.environ["COMPARE_CPU"] == "1" and dev != "cpu" else [])
for d in devices:
    smp = stage("sample", {"task": task, "sample": sections["sample"], "engine": engine(d), "seed": seed},
                {"model": behavior}, f"sample@{d}")
    ver = stage("verify", {"task": task, "verify": sections["verify"]}, {"responses": smp}, f"verify@{d}")
    sc = stage("score", {"score": {**sections["score"], "topk": 0}, "engine": engine(d)},
               {"data": ver, "model": behavior}, f"score@{d}")
    s = stage("sft", {"sft": {**sft, "device": d}, "objective": objective, "seed": seed},
              {"data": sc, "model": base}, f"sft@{d}")
    stage("eval", {"task": task, "eval": ev, "engine": engine(d), "seed": seed}, {"model": s}, f"eval@{d}")
    if importlib.util.find_spec("trl"):
        stage("rl", {"task": task, "rl": {**rl, "device": d}, "seed": seed}, {"model": s}, f"rl@{d}")
(out / "timings.json").write_text(json.dumps(timings, indent=2, default=str))
if len(devices) > 1:
    for k in [k for k in timings if k.endswith(f"@{dev}")]:
        cpu = timings.get(k.replace(f"@{dev}", "@cpu"))
        if cpu:
            print(f"{k.split('@')[0]:<10} {dev} {timings[k]['seconds']:8.1f} s   cpu {cpu['seconds']:8.1f} s"
                  f"   ratio {cpu['seconds'] / max(timings[k]['seconds'], 1e-9):6.2f}x")
print(f"wrote {out / 'timings.json'}")
EOF
