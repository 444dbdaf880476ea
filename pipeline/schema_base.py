"""Building blocks of the config schema (``pipeline/schema.py``): strict sections and the ranges
that ``pipeline/config_check.py`` prints ("in [0, 1]", "> 0", ">= 1")."""
from __future__ import annotations

from difflib import get_close_matches
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

Count = Annotated[int, Field(ge=1)]                 # at least one
Natural = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]      # a share or a probability
Probability = Annotated[float, Field(gt=0, le=1)]   # top_p, memory shares


class Section(BaseModel):
    """A config node: strict types (no "8" for 8), no undeclared key."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _ordered(lo_hi: list[float]) -> list[float]:
    if lo_hi[0] > lo_hi[1]:
        raise ValueError("must be [low, high] with low <= high")
    return lo_hi


Clip = Annotated[list[float], Field(min_length=2, max_length=2), AfterValidator(_ordered)]


def _initials(word: str) -> str:
    return "".join(part[0] for part in word.split("_") if part)


def suggest(word: str, choices: Any, prefix: str = "") -> str:
    """'; did you mean PREFIX+X?' for the choice ``word`` most likely meant, or ''.

    The closest spelling (difflib), else an abbreviation either way (``learning_rate`` ->
    ``lr``, ``lr`` -> ``learning_rate``)."""
    names = [str(c) for c in choices]
    close = get_close_matches(word, names, n=1, cutoff=0.6) or \
        [c for c in names if "_" in word + c and word != c and
         (c == _initials(word) or word == _initials(c))][:1]
    return f"; did you mean {prefix}{close[0]}?" if close else ""
