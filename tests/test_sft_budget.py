"""pear_neg's example budget (stages/sft_data.py select_rows): fixed by default (PEAR §4.5:
positives + failures = the positive-only objectives' count), the old "added" on request."""
from __future__ import annotations

import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline.cli import CONF_DIR
from stages.sft_data import budget_record, select_rows


def rows(pos: int, neg: int, timed_out: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"prompt_id": [f"p{i % 7}" for i in range(pos + neg + timed_out)],
                         "row": range(pos + neg + timed_out),
                         "correct": [True] * pos + [False] * (neg + timed_out),
                         "timed_out": [False] * (pos + neg) + [True] * timed_out})


def counts(df: pd.DataFrame) -> tuple[int, int]:
    return int(df["correct"].sum()), int((~df["correct"]).sum())


@pytest.mark.parametrize("data,want", [
    ({}, (50, 50)),                                        # default: fixed, 1:1 (§4.5)
    ({"negatives_ratio": 1.0, "budget": "fixed"}, (50, 50)),
    ({"negatives_ratio": 0.25}, (80, 20)),
    ({"negatives_ratio": 0.0}, (100, 0)),
    ({"negatives_ratio": 1.0, "budget": "added"}, (100, 100)),  # the old behaviour: twice the rows
    ({"negatives_ratio": 0.25, "budget": "added"}, (100, 25)),
])
def test_budget_and_ratio(data, want):
    train = rows(100, 300)
    got = select_rows(train, data, uses_negatives=True, seed=0)
    assert counts(got) == want
    assert got["row"].is_unique  # sampled without replacement
    assert counts(select_rows(train, data, uses_negatives=False, seed=0)) == (100, 0)


def test_scarce_failures_are_all_taken_and_positives_fill_the_budget():
    got = select_rows(rows(100, 10), {"negatives_ratio": 1.0}, True, seed=0)
    assert counts(got) == (90, 10) and len(got) == 100


def test_timed_out_answers_are_never_failures_and_the_choice_is_seeded():
    train = rows(100, 20, timed_out=200)
    got = select_rows(train, {}, True, seed=3)
    assert counts(got) == (80, 20) and not got["timed_out"].any()
    assert got["row"].tolist() == select_rows(train, {}, True, seed=3)["row"].tolist()
    assert got["row"].tolist() != select_rows(train, {}, True, seed=4)["row"].tolist()
    assert budget_record(train, {}) == {"budget": "fixed", "negatives_ratio": 1.0,
                                        "positives_available": 100, "negatives_available": 20}


def test_bad_budget_settings_are_named():
    with pytest.raises(ValueError, match="valid: fixed, added"):
        select_rows(rows(4, 4), {"budget": "double"}, True, seed=0)
    with pytest.raises(ValueError, match="negatives_ratio must be >= 0"):
        select_rows(rows(4, 4), {"negatives_ratio": -1}, True, seed=0)


def test_pear_neg_config_defaults_to_the_fixed_budget():
    data = OmegaConf.load(CONF_DIR / "objective" / "pear_neg.yaml").data
    assert data.budget == "fixed" and data.negatives_ratio == 1.0
