"""The schema of the composed config: every key the study knows, its type and its range.

One pydantic model per config group (``conf/<group>/``) and per top-level section of
``conf/config.yaml``; a group with several files (``task``, ``sampler``, ``rl``, ``cluster``,
``tracking``) is a union told apart by its tag key (``suite``, ``engine``, ``kind``,
``backend``). Objectives differ only in ``params`` and ``data``: :data:`OBJECTIVES` maps each
name to the models of both. Every model refuses keys it does not declare, so a key added with
Hydra's ``+`` (``+sft.learning_rate=1e-4``) or by an experiment file must be declared here.

Adding a setting = one field in its group's model (with its range); adding a group = one model
and one field of :class:`Config`. ``pipeline/config_check.py`` turns this schema into one-line
errors and "did you mean" suggestions; ``tests/test_config_check.py`` composes every experiment
and every objective and validates it. Mappings passed through to another library as they are
(``sampler.engine_kwargs``, ``sampler.env``, ``sft.fsdp_config``, ``task.games.<game>.config``,
``model.bootstrap.arch`` beyond its declared keys) are not checked key by key.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field, model_validator

from pipeline.schema_base import (Count, Fraction, Natural, NonNegative, Positive, Probability,
                                  Section, suggest)
from pipeline.schema_groups import OBJECTIVES, Model, Objective, Sampler, Task
from stages import VERSIONS


# ---- conf/sft, conf/rl, conf/eval -------------------------------------------------------------

class Sft(Section):
    lr: Positive
    epochs: Count
    batch_size: Count                 # the global micro-batch, split over num_processes ranks
    grad_accum: Count = 1
    warmup_ratio: Fraction = 0.0
    weight_decay: NonNegative = 0.0
    max_grad_norm: NonNegative = 1.0
    heldout_fraction: Annotated[float, Field(ge=0, lt=1)]
    save_steps: Count
    device: str = "auto"
    num_processes: Count = 1
    fsdp: bool | str | None = False
    fsdp_config: dict[str, Any] | None = None
    gradient_checkpointing: bool = False
    group_by_length: bool = False
    loss_reduction: Literal["token_mean", "seq_sum"] = "token_mean"   # over the optimizer step


class TrlRl(Section):
    engine: Literal["trl"]
    steps: Count
    lr: Positive
    warmup_steps: Natural = 0
    prompts_per_step: Count
    num_generations: Annotated[int, Field(ge=2)]     # a GRPO group needs two completions
    beta: NonNegative
    temperature: Positive
    max_completion_length: Count
    save_steps: Count
    device: str = "auto"
    loss_type: str = "grpo"           # TRL's GRPOConfig.loss_type (grpo, dr_grpo, dapo, ...)
    num_iterations: Count = 1         # TRL's μ: optimizer steps per batch of rollouts
    gradient_checkpointing: bool = False


class VerlRl(Section):
    engine: Literal["verl"]
    steps: Count
    lr: Positive
    train_batch_size: Count
    kl_coef: NonNegative
    kl_loss_type: str
    rollouts_per_prompt: Count
    temperature: Positive
    top_p: Probability
    max_prompt_length: Count
    max_response_length: Count
    ppo_mini_batch_size: Count
    max_token_len_per_gpu: Count
    n_gpus_per_node: Count
    nnodes: Count = 1
    tensor_parallel_size: Count = 1
    gpu_memory_utilization: Probability
    attn_implementation: str = "sdpa"
    use_remove_padding: bool = False
    save_freq: Annotated[int, Field(ge=-1)]
    max_ckpt_to_keep: Count | None = None
    test_freq: Annotated[int, Field(ge=-1)] = -1
    logger: list[str] = ["console"]
    project: str
    start_retries: Natural = 0
    start_wait_s: NonNegative = 60
    overrides: list[str] = []

    @model_validator(mode="after")
    def _fits(self) -> VerlRl:
        need = self.max_prompt_length + self.max_response_length
        if self.max_token_len_per_gpu < need:
            raise ValueError(f"rl.max_token_len_per_gpu ({self.max_token_len_per_gpu}) must hold "
                             f"one prompt + response: rl.max_prompt_length + "
                             f"rl.max_response_length = {need}")
        if self.ppo_mini_batch_size > self.train_batch_size:
            raise ValueError(f"rl.ppo_mini_batch_size ({self.ppo_mini_batch_size}) must be <= "
                             f"rl.train_batch_size ({self.train_batch_size})")
        return self


Rl = Annotated[Union[TrlRl, VerlRl], Field(discriminator="engine")]


class Eval(Section):
    split: Literal["train", "rl", "eval"] = "eval"
    n: Count
    ks: Annotated[list[Count], Field(min_length=1)]
    temperature: NonNegative = 1.0
    top_p: Probability = 1.0
    max_new_tokens: Count
    shard_size: Count | None = None
    timeout_s: Positive = 0.9                # as verify's (conf/eval/default.yaml takes them from there)
    retry_timeout_s: Positive | None = 10.0


# ---- conf/cluster, conf/tracking --------------------------------------------------------------

class ClusterBase(Section):
    max_retries: Natural = 1
    lock_timeout_s: Positive = 172800


class InlineCluster(ClusterBase):
    kind: Literal["inline"]


class LocalCluster(ClusterBase):
    kind: Literal["local"]
    num_cpus: Count | None = None
    num_gpus: Natural | None = None


class RayCluster(ClusterBase):
    kind: Literal["ray"]
    address: str = "auto"


Cluster = Annotated[Union[InlineCluster, LocalCluster, RayCluster], Field(discriminator="kind")]


class NoTracking(Section):
    backend: Literal["none"]


class WandbTracking(Section):
    backend: Literal["wandb"]
    project: str
    entity: str | None = None
    group: str | None = None
    mode: Literal["auto", "online", "offline", "disabled"] = "auto"
    dir: str | None = None
    tags: list[str] = []


Tracking = Annotated[Union[NoTracking, WandbTracking], Field(discriminator="backend")]


# ---- study-wide sections of conf/config.yaml -------------------------------------------------

class Sample(Section):
    n: Count
    temperature: Positive
    top_p: Probability
    max_new_tokens: Count
    shard_size: Count


class Verify(Section):
    min_correct: Natural
    max_bad_fraction: Fraction
    timeout_s: Positive = 0.9                # math-verify's bound per answer (stages/judging.py)
    retry_timeout_s: Positive | None = 10.0  # the retry's bound for answers that ran out of time


class Score(Section):
    nan_policy: Literal["fail", "drop"]
    shard_size: Count


class Report(Section):
    ks: Annotated[list[Count], Field(min_length=1)]
    large_k: Count | None = None
    rank_by: Annotated[str, Field(pattern=r"^(pass|maj|avg)@[1-9][0-9]*$")] = "pass@1"
    bootstrap: Natural
    ci: Annotated[float, Field(gt=0, lt=1)]


class Rotation(Section):
    """Gradient rotation between offline and online pilots (PEAR App. A.4)."""
    enabled: bool = False
    steps: Count = 10
    k: Count = 128
    batch_size: Count = 8
    offline_lr: float = 1e-5          # ${sft.lr} and ${rl.lr} by default: checked there, once
    online_lr: float = 1e-6
    prompts_per_step: Count = 8
    num_generations: int = 8          # ${rl...} by default, like the lrs: checked there
    max_completion_length: int = 256


class Analysis(Section):
    enabled: bool
    calibration_size: Count
    batch_size: Count
    sparsity_eps: NonNegative
    device: str
    rotation: Rotation = Rotation()


class Resources(Section):
    num_cpus: NonNegative = 1
    num_gpus: NonNegative = 0


class Progress(Section):
    heartbeat_s: Positive = 60  # seconds between progress lines when output is not a terminal


class Study(Section):
    """``study.mode=budget``: RL only for the objectives an offline proxy ranks best, plus
    random controls (``pipeline/budget.py`` checks the proxy against the report's columns)."""
    mode: Literal["full", "budget"] = "full"
    proxy: Annotated[str, Field(min_length=1)] = "offline_pass@large_k"
    direction: Literal["auto", "max", "min"] = "auto"
    top_m: Count = 2
    controls: Natural = 1
    control_seed: int = 0
    gpu_hours: dict[str, NonNegative] | None = None  # GPU-hours per node of a stage


# ---- the whole config ---------------------------------------------------------------------------

class Config(Section):
    experiment_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    results_dir: Annotated[str, Field(min_length=1)]
    seed: int
    seeds: Annotated[list[int], Field(min_length=1)] | None = None
    objectives: Annotated[list[str], Field(min_length=1)]
    task: Task
    online_task: Task | None = None   # transfer studies: RL prompts and every eval (paper §4.4)
    model: Model
    sampler: Sampler
    objective: Objective
    sft: Sft
    rl: Rl
    eval: Eval
    cluster: Cluster
    tracking: Tracking
    sample: Sample
    verify: Verify
    score: Score
    report: Report
    analysis: Analysis
    resources: dict[str, Resources] = {}
    progress: Progress = Progress()
    study: Study = Study()

    @model_validator(mode="after")
    def _across_groups(self) -> Config:
        for key in ("eval.ks", "report.ks"):
            group, _, field = key.partition(".")
            too_big = [k for k in getattr(getattr(self, group), field) if k > self.eval.n]
            if too_big:
                raise ValueError(f"{key} {too_big} must be <= eval.n ({self.eval.n}): pass@k "
                                 "needs k of the n samples per prompt")
        if self.report.large_k is not None and self.report.large_k > self.eval.n:
            raise ValueError(f"report.large_k ({self.report.large_k}) must be <= eval.n "
                             f"({self.eval.n})")
        for what, values in (("objectives", self.objectives), ("seeds", self.seeds or [])):
            twice = sorted({v for v in values if values.count(v) > 1})
            if twice:
                raise ValueError(f"{what} lists {twice} more than once")
        unknown = [o for o in self.objectives if o not in OBJECTIVES]
        if unknown:
            hint = suggest(unknown[0], OBJECTIVES) or f" (valid: {', '.join(sorted(OBJECTIVES))})"
            raise ValueError(f"objectives: unknown objective {unknown[0]!r}{hint}")
        extra = sorted(set(self.resources) - {"default", *VERSIONS})
        if extra:
            raise ValueError(f"resources.{extra[0]}: no stage of that name"
                             f"{suggest(extra[0], VERSIONS)}; stages: {', '.join(VERSIONS)}")
        return self
