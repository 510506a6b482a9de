"""What every section of an input file is built from: the frozen base model and the field types.

All models are frozen and forbid unknown keys, so a misspelt key is an error, not a silent default. Quantity
fields accept strings with units ("80 GiB", "3.35 TB/s") and hold SI floats after validation. Each policy
family is a union discriminated on `kind:`; that union is the only lookup table. The sections themselves are
one module each: cluster.py, workload.py, deployment.py, serving.py, scenario.py (with cost and sim), studies.py.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from simulator import units
from simulator.errors import brief

DType = Literal["fp32", "bf16", "fp16", "fp8", "int8", "fp4", "int4"]

Bytes = Annotated[float, BeforeValidator(units.parse_bytes), Field(gt=0)]
# >= 1 kB/s: a slower link stretches one transfer past the float64 time horizon (1e-300 B/s gave NaN times)
Bandwidth = Annotated[float, BeforeValidator(units.parse_bandwidth), Field(ge=1e3)]
FlopRate = Annotated[float, BeforeValidator(units.parse_flops), Field(gt=0)]
# Simulated time stays below ~3 years, where float64 still resolves a nanosecond: beyond 1e8 s, adding a
# microsecond step to the clock starts to round away (found by fuzzing: a rate of 1e-300 /s).
MAX_SECONDS = 1e8
SPAN_RULE = f"allowed: up to {MAX_SECONDS:.0e} s of simulated time (float64 resolution)"
Seconds = Annotated[float, BeforeValidator(units.parse_seconds), Field(ge=0, le=MAX_SECONDS)]
MAX_RATE = 1e9  # requests per second: beyond it generation overflows numpy's samplers (found by faulting)
Rate = Annotated[float, BeforeValidator(units.parse_rate), Field(gt=0, le=MAX_RATE)]
Watts = Annotated[float, BeforeValidator(units.parse_watts), Field(ge=0)]
Fraction = Annotated[float, Field(ge=1e-3, le=1)]  # >= 0.1%: an efficiency of 1e-300 makes step times infinite

MAX_TOKENS = 10**9  # longest prompt or answer a length may give (today's longest contexts: ~10^7 tokens)
Tokens = Annotated[int, Field(ge=1, le=MAX_TOKENS)]

_NAME = re.compile(r"[^\W_][\w.+-]{0,99}")
NAME_RULE = "letters, digits, '_', '.', '+', '-', starting with a letter or digit, at most 100 characters"


def safe_name(name: str) -> str:
    """A name that becomes a file or folder name (results/<name>): never a path that leaves the output folder."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{brief(name)} cannot name an output folder; allowed: {NAME_RULE}")
    return name


# the names an output path is made of: scenario (results/<name>), sweep, compare and its designs, workload
SafeName = Annotated[str, AfterValidator(safe_name)]
OptionalName = Annotated[str, AfterValidator(lambda name: name and safe_name(name))]  # "" when unnamed


def _plot_name(metric: str) -> str:
    """A metric a sweep plots to plots/<metric>.png: any dotted summary name that is one file name."""
    if not metric or re.search(r"[/\\\x00-\x1f\x7f]", metric):
        raise ValueError(f"{brief(metric)} cannot name a plot file; allowed: a dotted summary metric without "
                         "'/', '\\' or control characters")
    return metric


PlotName = Annotated[str, AfterValidator(_plot_name)]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, data: Any) -> Any:
        """`num_requests: true` is a typo, not 1: a boolean where a plain number belongs is passed on as the
        word the file holds, which the number field then refuses (pydantic would read true as 1)."""
        if isinstance(data, dict) and any(isinstance(v, bool) for v in data.values()):
            fields = cls.model_fields
            data = {k: str(v).lower() if isinstance(v, bool) and k in fields and
                    _plain_number(fields[k].annotation) else v for k, v in data.items()}
        return data


def _plain_number(annotation: Any) -> bool:
    """An int or float field (optional or not), not a bool, string or quantity with units."""
    if annotation in (int, float):
        return True
    args = get_args(annotation)
    return bool(args) and type(None) in args and all(a in (int, float, type(None)) for a in args)
