"""``rl=verl``: GRPO with verl 0.9.1 on GPUs, vLLM rollouts, reward = the task verifier.

Paper §4.2 ("Online RL"): GRPO from each offline checkpoint with learning rate 1e-6, batch size
128 and KL coefficient 0.01; the recipe is ``conf/rl/verl.yaml``, turned into verl overrides by
the pure function ``verl_overrides`` (tested: they compose against verl's own ``ppo_trainer``
config and pass its ``validate_config``).

What the stage does:

1. writes the task's ``rl`` split (training prompts) and ``eval`` split (verl's validation set,
   only read when ``rl.test_freq`` > 0) as parquet in verl's RL schema
   (``verifiers.verl_reward.write_verl_parquet``) under ``work/data``;
2. runs ``python -m verl.trainer.main_ppo <overrides>`` as a child process, its output in the
   stage log; the reward is ``verifiers/verl_reward.py:compute_score`` (the same verifier as
   everywhere else). Checkpoints go to ``work/checkpoints`` with ``hf_model`` in
   ``save_contents``, and ``trainer.resume_mode=auto`` resumes a crashed run there;
3. links the final actor's HF weights and config (``global_step_<steps>/actor/huggingface``)
   into ``out``, saves the starting model's tokenizer there and writes ``curves.parquet`` from
   verl's file logger, so eval loads ``out`` like any other model.

Ray and GPUs: inside the pipeline's Ray cluster the child joins that cluster
(``+ray_kwargs.ray_init.address=auto``; ``RAY_ADDRESS`` wins when set) and verl's own workers
take the GPUs (``rl.n_gpus_per_node`` × ``rl.nnodes``, a placement group of one GPU per bundle);
the stage's Ray task asks for no GPU but for as many ``gpu_lease`` (the runner's gate,
``pipeline/gpus.py``): it waits in Ray's queue until they are free and holds them while verl
runs, which keeps our other GPU holders off those GPUs, so verl's start check (it stops unless
enough GPUs are *free*, ``verl/single_controller/ray/base.py``) passes. Outside Ray
(``cluster=inline``) verl starts its own. Should the check still find the GPUs busy (a process
outside the pipeline holds some), the stage retries that start every ``rl.start_wait_s`` seconds,
``rl.start_retries`` times.

Prompts: verl always renders ``prompt`` through the chat template. For suites whose prompts are
plain text (our sample/eval stages feed them verbatim), the stage sets
``actor_rollout_ref.model.custom_chat_template`` to a template that concatenates the message
contents, so RL sees exactly the text SFT and eval see.

NOT EXECUTED HERE: verl trains on GPUs only; on our CPU machines the tests run the override
list, the parquet and the reward through verl's own config, dataset and reward-manager code.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from stages.common import load_tokenizer, note, write_table

REWARD_FILE = str(Path(__file__).resolve().parents[2] / "verifiers" / "verl_reward.py")
RAW_CHAT_TEMPLATE = "{% for m in messages %}{{ m.content }}{% endfor %}"
GPUS_BUSY = "is less than total desired GPUs"  # verl's ResourcePoolManager start check
TRACKER = "latest_checkpointed_iteration.txt"


@dataclass(frozen=True)
class VerlPaths:
    """Run-time facts of one verl run (everything ``verl_overrides`` needs besides the config)."""

    model: str
    train_file: str
    val_file: str
    checkpoints: str
    metrics_file: str
    reward_file: str = REWARD_FILE
    ray_address: str | None = None   # "auto": join the running cluster; None: verl starts Ray
    raw_prompts: bool = False        # plain-text prompts: render them verbatim
    name: str = "rl"


def _q(value: Any) -> str:
    """A Hydra override value quoted, so paths with spaces, commas or '=' stay one string."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def _list(values: Iterable[str]) -> str:
    return "[" + ",".join(values) + "]"


def verl_overrides(cfg: Mapping[str, Any], paths: VerlPaths) -> list[str]:
    """verl ``main_ppo`` overrides for the rl stage's config slice ``{task, rl, seed}``."""
    r, seed = cfg["rl"], int(cfg["seed"])
    prompt, response = int(r["max_prompt_length"]), int(r["max_response_length"])
    if int(r["max_token_len_per_gpu"]) < prompt + response:
        raise ValueError(f"rl.max_token_len_per_gpu={r['max_token_len_per_gpu']} must hold one "
                         f"prompt + response ({prompt + response} tokens)")
    actor, rollout = "actor_rollout_ref.actor", "actor_rollout_ref.rollout"
    ov = [
        "algorithm.adv_estimator=grpo",
        "algorithm.use_kl_in_reward=False",            # KL as a loss term (GRPO), not in reward
        f"data.train_files={_q(paths.train_file)}",
        f"data.val_files={_q(paths.val_file)}",
        "data.prompt_key=prompt",
        f"data.train_batch_size={int(r['train_batch_size'])}",
        f"data.max_prompt_length={prompt}",
        f"data.max_response_length={response}",
        "data.filter_overlong_prompts=True",
        f"data.seed={seed}",
        f"actor_rollout_ref.model.path={_q(paths.model)}",
        f"+actor_rollout_ref.model.override_config.attn_implementation={r['attn_implementation']}",
        f"actor_rollout_ref.model.use_remove_padding={bool(r['use_remove_padding'])}",
        "actor_rollout_ref.model.enable_gradient_checkpointing=True",
        f"{actor}.optim.lr={float(r['lr'])}",
        f"{actor}.ppo_mini_batch_size={int(r['ppo_mini_batch_size'])}",
        f"{actor}.use_dynamic_bsz=True",
        f"{actor}.ppo_max_token_len_per_gpu={int(r['max_token_len_per_gpu'])}",
        f"{actor}.use_kl_loss=True",
        f"{actor}.kl_loss_coef={float(r['kl_coef'])}",
        f"{actor}.kl_loss_type={r['kl_loss_type']}",
        f"{actor}.entropy_coeff=0",
        f"{actor}.checkpoint.save_contents=[model,optimizer,extra,hf_model]",
        f"{actor}.checkpoint.load_contents=[model,optimizer,extra]",
        f"{rollout}.name=vllm",
        f"{rollout}.n={int(r['rollouts_per_prompt'])}",
        f"{rollout}.temperature={float(r['temperature'])}",
        f"{rollout}.top_p={float(r['top_p'])}",
        f"{rollout}.tensor_model_parallel_size={int(r['tensor_parallel_size'])}",
        f"{rollout}.gpu_memory_utilization={float(r['gpu_memory_utilization'])}",
        f"{rollout}.seed={seed}",
        f"reward.custom_reward_function.path={_q(paths.reward_file)}",
        "reward.custom_reward_function.name=compute_score",
        "trainer.resume_mode=auto",
        f"trainer.default_local_dir={_q(paths.checkpoints)}",
        f"trainer.total_training_steps={int(r['steps'])}",
        "trainer.total_epochs=1000",                   # steps decide; the data loops as needed
        f"trainer.save_freq={int(r['save_freq'])}",   # and always at the last step
        f"trainer.max_actor_ckpt_to_keep={int(r['max_ckpt_to_keep'])}",
        f"trainer.test_freq={int(r['test_freq'])}",
        "trainer.val_before_train=False",
        f"trainer.n_gpus_per_node={int(r['n_gpus_per_node'])}",
        f"trainer.nnodes={int(r['nnodes'])}",
        f"trainer.logger={_list(r['logger'])}",
        f"trainer.project_name={_q(r['project'])}",
        f"trainer.experiment_name={_q(paths.name)}",
        f"+ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={_q(paths.metrics_file)}",
    ]
    if paths.ray_address:
        ov.append(f"+ray_kwargs.ray_init.address={paths.ray_address}")
    if paths.raw_prompts:
        ov.append(f"actor_rollout_ref.model.custom_chat_template={_q(RAW_CHAT_TEMPLATE)}")
    return ov + [str(o) for o in (r.get("overrides") or [])]


def ray_address(environ: Mapping[str, str]) -> str | None:
    """``auto`` inside a Ray cluster (``RAY_ADDRESS`` set, or this process is a Ray worker, which
    Ray marks with ``RAY_RAYLET_PID``), else None: verl then starts a Ray instance of its own."""
    return "auto" if environ.get("RAY_ADDRESS") or environ.get("RAY_RAYLET_PID") else None


def plain_text_prompts(prompts: list[Any]) -> bool:
    """True if every prompt is plain text, False if every one is a chat list; mixed is an error."""
    kinds = {isinstance(p, str) for p in prompts}
    if len(kinds) > 1:
        raise ValueError("the rl split mixes plain-text and chat prompts; verl renders one way")
    return kinds == {True}


def final_hf_dir(checkpoints: Path, steps: int) -> Path:
    """The HF weights verl saved at its last step (``hf_model`` in ``save_contents``)."""
    tracker = Path(checkpoints) / TRACKER
    if not tracker.is_file():
        raise FileNotFoundError(f"verl wrote no checkpoint under {checkpoints} (rl.save_freq > 0?)")
    step = int(tracker.read_text().strip())
    if step != steps:
        raise RuntimeError(f"verl's last checkpoint is step {step}, expected rl.steps={steps}")
    hf = Path(checkpoints) / f"global_step_{step}" / "actor" / "huggingface"
    if not any(hf.glob("*.safetensors")):
        raise FileNotFoundError(f"{hf} holds no weights; save_contents must include hf_model")
    return hf


def read_curves(files: Iterable[Path]) -> pd.DataFrame:
    """verl's file-logger lines ``{"step": s, "data": {...}}``, one row per step (a resumed
    attempt's rows replace the earlier attempt's for the same step); ``reward`` = mean score."""
    by_step: dict[int, dict[str, Any]] = {}
    for f in files:
        for line in Path(f).read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                by_step[int(rec["step"])] = {"step": int(rec["step"]), **rec["data"]}
    df = pd.DataFrame([by_step[s] for s in sorted(by_step)])
    if "critic/score/mean" in df:
        df["reward"] = df["critic/score/mean"]
    return df


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)   # the work dir is deleted after success; the link keeps the weights
    except OSError:
        shutil.copy2(src, dst)


def export_weights(hf: Path, out: Path) -> list[str]:
    """Link (or copy) the model files of verl's HF export into ``out``: config, generation config
    and safetensors weights; the tokenizer comes from the starting model instead."""
    names = sorted(p.name for p in hf.iterdir()
                   if p.name in ("config.json", "generation_config.json") or ".safetensors" in p.name)
    for name in names:
        _link_or_copy(str(hf / name), str(out / name))
    return names


def _die_with_parent() -> None:
    """Child side: get SIGTERM when the stage process dies, so a retried stage never races an
    orphaned verl run over the same checkpoints (Linux; elsewhere a no-op)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main_ppo_command(overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "verl.trainer.main_ppo", *overrides]


def launch(cmd: list[str], cwd: Path, retries: int, wait_s: float) -> None:
    """Run verl (``cmd``) in ``cwd``; retry while its start check finds the GPUs busy."""
    for attempt in range(retries + 1):
        tail: deque[str] = deque(maxlen=60)
        with subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, bufsize=1, preexec_fn=_die_with_parent) as proc:
            try:
                for line in proc.stdout:  # into the stage log
                    sys.stdout.write(line)
                    tail.append(line)
            except BaseException:  # Ctrl-C (a cancelled stage) or an error here: verl stops too
                proc.kill()
                raise
        if proc.returncode == 0:
            return
        text = "".join(tail)
        if GPUS_BUSY in text and attempt < retries:
            print(f"[rl] verl found too few free GPUs; retry {attempt + 1}/{retries} in {wait_s:g} s",
                  flush=True)
            time.sleep(wait_s)
            continue
        raise RuntimeError(f"verl exited with {proc.returncode}; its last lines:\n{text}")


def run(cfg: dict, inputs: dict, out: Path, work: Path) -> dict:
    from verifiers import build_suite
    from verifiers.verl_reward import write_verl_parquet

    r, work = cfg["rl"], Path(work)
    suite = build_suite(cfg["task"])
    n_rl = write_verl_parquet(suite, "rl", work / "data" / "rl.parquet")
    write_verl_parquet(suite, "eval", work / "data" / "eval.parquet")
    if n_rl < int(r["train_batch_size"]):
        raise ValueError(f"the rl split has {n_rl} prompts, fewer than rl.train_batch_size="
                         f"{r['train_batch_size']}: verl would train no step")
    ckpt = work / "checkpoints"
    resumed = (ckpt / TRACKER).read_text().strip() if (ckpt / TRACKER).is_file() else None
    if resumed:
        note(f"resumed from verl's checkpoint of step {resumed} of {int(r['steps'])}")
    attempt = len(list(work.glob("metrics-*.jsonl")))
    paths = VerlPaths(
        model=str(inputs["model"]), train_file=str(work / "data" / "rl.parquet"),
        val_file=str(work / "data" / "eval.parquet"), checkpoints=str(ckpt),
        metrics_file=str(work / f"metrics-{attempt:03d}.jsonl"), ray_address=ray_address(os.environ),
        raw_prompts=plain_text_prompts([it.prompt for it in suite.items("rl")]),
        name=f"rl-{work.name.removeprefix('.work-')}")
    overrides = verl_overrides(cfg, paths)
    (work / "overrides.txt").write_text("\n".join(overrides) + "\n")
    launch(main_ppo_command(overrides), work, int(r["start_retries"]), float(r["start_wait_s"]))

    export_weights(final_hf_dir(ckpt, int(r["steps"])), Path(out))
    load_tokenizer(str(inputs["model"])).save_pretrained(out)  # not the template verl ran with
    curves = read_curves(sorted(work.glob("metrics-*.jsonl")))
    write_table(curves, out, "curves.parquet")
    quarter = max(1, len(curves) // 4)
    reward = curves["reward"] if "reward" in curves else pd.Series(dtype=float)
    return {"steps": int(r["steps"]), "rl_prompts": n_rl, "attempts": attempt + 1,
            "resumed_from": int(resumed) if resumed else None,
            "reward_first_quarter": float(reward.iloc[:quarter].mean()) if len(reward) else None,
            "reward_last_quarter": float(reward.iloc[-quarter:].mean()) if len(reward) else None}
