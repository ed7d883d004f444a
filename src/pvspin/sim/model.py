"""The base of every scenario model: numbers are checked once, where they enter.

A scenario's values come from TOML files, command-line flags and sweep parameters, and all of
them are validated by these models.  A number that is infinite, NaN, or too large to compute
with is refused here, with the field that holds it, instead of crashing the engine later (a
float product overflowing to inf, then ``int(inf)`` or a division by it) or running
"successfully" on nonsense (an interrupt rate of inf: nothing but interrupts).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

# Beyond 2**53 a float no longer holds every integer, and the engine's arithmetic in cycles
# (nanoseconds times the clock in MHz) leaves what any run can reach; fields with a tighter
# meaningful range say so with their own ``le``.
MAX_MAGNITUDE = 2**53


class Model(BaseModel):
    """Unknown keys refused, values frozen, numbers finite and at most :data:`MAX_MAGNITUDE`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _bounded(cls, value):
        if type(value) in (int, float) and abs(value) > MAX_MAGNITUDE:
            raise ValueError(f"{value:g} is too large (at most 2**53)")
        return value
