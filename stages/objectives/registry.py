"""Name → :class:`Objective`: the one place that lists every objective and what it needs.

Adding an objective = one function + one entry here + one ``conf/objective/<name>.yaml`` (a test
checks the registry and the conf files match both ways, and that the YAML params equal the
function's defaults).
"""
from __future__ import annotations

from . import baselines, distill, pear
from .core import Objective

_OBJECTIVES = [
    Objective("sft", baselines.sft),
    Objective("sft_kl", baselines.sft_kl, needs_logits=True, needs_ref=True),
    Objective("general_family", baselines.general_family),
    Objective("top_p", baselines.top_p),
    Objective("bottom_p", baselines.bottom_p),
    Objective("top_logp", baselines.top_logp),
    Objective("bottom_logp", baselines.bottom_logp),
    Objective("talr", baselines.talr, needs_step_nll=True),
    Objective("single_step_is", baselines.single_step_is),
    Objective("pear_seq", pear.pear_seq),
    Objective("pear_token", pear.pear_token),
    Objective("pear_block", pear.pear_block),
    Objective("pear_neg", pear.pear_neg, uses_negatives=True),
    Objective("kd", distill.kd, needs_logits=True, behavior_topk=True),
    Objective("pear_kd", distill.pear_kd, needs_logits=True, behavior_topk=True),
]

REGISTRY: dict[str, Objective] = {o.name: o for o in _OBJECTIVES}


def get_objective(name: str) -> Objective:
    """The registered objective called ``name``; ValueError listing the valid names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; valid objectives: "
                         f"{', '.join(sorted(REGISTRY))}") from None
