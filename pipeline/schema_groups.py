"""Schema of the config groups that pick data, models and engines: ``conf/task``,
``conf/model``, ``conf/sampler``, ``conf/objective`` (see ``pipeline/schema.py``)."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import ConfigDict, Field, create_model, field_validator, model_validator

from pipeline.schema_base import (Clip, Count, Fraction, Natural, NonNegative, Positive,
                                  Probability, Section)


# ---- conf/task: one model per suite --------------------------------------------------------

class Sizes(Section):
    train: Natural | None = None
    rl: Natural | None = None
    eval: Natural | None = None


class TaskBase(Section):
    seed: int = 0
    sizes: Sizes = Sizes()
    chat: bool = False                # prompts through the model's chat template
    system: str | None = None         # its system message


class ToyTask(TaskBase):
    suite: Literal["toy"]
    min_operands: Count = 2
    max_operands: Count = 5
    max_operand: Count = 9
    pretrain_size: Count = 20000

    @model_validator(mode="after")
    def _operands(self) -> ToyTask:
        if self.min_operands > self.max_operands:
            raise ValueError(f"task.min_operands ({self.min_operands}) must be <= "
                             f"task.max_operands ({self.max_operands})")
        return self


class Game(Section):
    weight: NonNegative = 1.0
    config: dict[str, Any] | None = None   # reasoning-gym's own knobs, passed as they are


class LogicTask(TaskBase):
    suite: Literal["logic"]
    games: dict[str, Game | None] | None = None
    prompt_template: str = ""


class MathSource(Section):
    name: str
    path: str | None = None
    problem_field: str | None = None
    answer_field: str | None = None
    id_field: str | None = None
    limit: Natural | None = None


class MathTask(TaskBase):
    suite: Literal["math"]
    train: list[MathSource] | None = None
    rl: list[MathSource] | None = None
    eval: list[MathSource] | None = None
    prompt_template: str = ""
    warm: bool = True


class SynLogicTask(TaskBase):
    suite: Literal["synlogic"]
    path: str | list[str] | None = None
    eval_path: str | list[str] | None = None
    tasks: list[str] | None = None
    skip_types: list[str] = []
    validate_: Literal["off", "report", "drop"] = Field("off", alias="validate")
    official_verifiers: str | None = None


Task = Annotated[Union[ToyTask, LogicTask, MathTask, SynLogicTask], Field(discriminator="suite")]


# ---- conf/model -------------------------------------------------------------------------------

class Arch(Section):
    model_config = ConfigDict(extra="allow", strict=True)   # any other Qwen3Config argument
    hidden_size: Count
    intermediate_size: Count
    num_hidden_layers: Count
    num_attention_heads: Count
    num_key_value_heads: Count
    head_dim: Count
    max_position_embeddings: Count = 128


class Pretrain(Section):
    steps: Count
    lr: Positive
    p_correction: Fraction | None = None   # behavior only: share of traces with a correction


class Bootstrap(Section):
    vocab_size: Count
    batch_size: Count
    arch: Arch
    base: Pretrain
    behavior: Pretrain


class Model(Section):
    base: str | None = None
    behavior: str | None = None
    bootstrap: Bootstrap | None = None

    @model_validator(mode="after")
    def _named(self) -> Model:
        missing = [k for k in ("base", "behavior")
                   if self.bootstrap is None and not getattr(self, k)]
        if missing:
            raise ValueError(f"model.bootstrap is null, so model.{missing[0]} must name a hub id "
                             "or a local model directory")
        return self


# ---- conf/sampler -----------------------------------------------------------------------------

class SamplerBase(Section):
    workers: Count = 1
    gpus_per_worker: Literal["auto"] | NonNegative = "auto"
    cpus_per_worker: NonNegative = 1


class HfSampler(SamplerBase):
    engine: Literal["hf"]
    device: str = "auto"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: Count = 64


class VllmSampler(SamplerBase):
    engine: Literal["vllm"]
    dtype: str = "auto"
    tensor_parallel_size: Count = 1
    gpu_memory_utilization: Probability = 0.85
    kv_cache_memory_bytes: Count | None = None
    max_model_len: Count | None = None
    max_num_seqs: Count = 256
    enforce_eager: bool = False
    enable_prefix_caching: bool = True
    seed: int = 0
    logprobs_mode: Literal["raw_logprobs", "raw_logits", "processed_logprobs",
                           "processed_logits"] = "raw_logprobs"
    max_logprobs: Annotated[int, Field(ge=-1)] = 20
    flat_logprobs: bool = False
    distributed_executor_backend: Literal["mp", "ray", "uni", "external_launcher"] | None = None
    env: dict[str, Any] = {}
    engine_kwargs: dict[str, Any] = {}
    cpu: dict[str, Any] = {}          # on vLLM's CPU platform: replaces the keys above

    @field_validator("cpu")
    @classmethod
    def _cpu_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - set(cls.model_fields) - {"cpu", "engine"})
        if unknown:
            raise ValueError(f"sampler.cpu may only replace sampler keys; unknown: {unknown}")
        return v


Sampler = Annotated[Union[HfSampler, VllmSampler], Field(discriminator="engine")]


# ---- conf/objective: params and data per objective name ---------------------------------------

class NoParams(Section):
    pass


class SftKlParams(Section):
    beta: NonNegative = 0.1


class GeneralFamilyParams(Section):
    alpha: float = 1.0


class ThresholdParams(Section):
    q: Fraction = 0.2


class TalrParams(Section):
    w_min: Fraction = 0.01


class ClipParams(Section):
    delta_clip: Clip = [-0.08, 0.3]


class PearSeqParams(ClipParams):
    log_g_clip: Clip = [-10.0, 5.0]


class PearTokenParams(PearSeqParams):
    gamma: Annotated[float, Field(gt=0, le=1)] = 0.999


class PearBlockParams(PearTokenParams):
    block: Count = 4


class PearNegParams(PearBlockParams):
    block: Count = 1
    neg_lambda: NonNegative = 1.0


class NoData(Section):
    pass


class TopkData(Section):
    topk: Count = 20                  # behavior log-probs stored per position


class RefData(Section):
    ref_model: Literal["base"] = "base"


class NegativesData(Section):
    budget: Literal["fixed", "added"] = "fixed"  # fixed: as many rows as the positive-only objectives
    negatives_ratio: NonNegative = 1.0           # failures per positive (stages/sft_data.py select_rows)


OBJECTIVES: dict[str, tuple[type[Section], type[Section]]] = {
    "sft": (NoParams, NoData),
    "sft_kl": (SftKlParams, RefData),
    "general_family": (GeneralFamilyParams, NoData),
    "top_p": (ThresholdParams, NoData),
    "bottom_p": (ThresholdParams, NoData),
    "top_logp": (ThresholdParams, NoData),
    "bottom_logp": (ThresholdParams, NoData),
    "talr": (TalrParams, NoData),
    "single_step_is": (ClipParams, NoData),
    "pear_seq": (PearSeqParams, NoData),
    "pear_token": (PearTokenParams, NoData),
    "pear_block": (PearBlockParams, NoData),
    "pear_neg": (PearNegParams, NegativesData),
    "kd": (NoParams, TopkData),
    "pear_kd": (PearTokenParams, TopkData),
}


def _objective_model(name: str, params: type[Section], data: type[Section]) -> type[Section]:
    return create_model(f"Objective_{name}", __base__=Section, name=(Literal[name], ...),
                        params=(params, params()), data=(data, data()))


Objective = Annotated[Union[tuple(_objective_model(n, *pd) for n, pd in OBJECTIVES.items())],
                      Field(discriminator="name")]
