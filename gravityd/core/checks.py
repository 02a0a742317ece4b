"""Type checks shared by the frozen parameter dataclasses (FoldParams, RankParams)."""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any


def check_fields(obj: Any) -> None:
    """Check and normalise every field of a frozen dataclass by its annotated type.

    Ints given as whole floats (TOML `10.0`) become ints and ints become floats where a float is
    declared; booleans are never numbers; floats must be finite. Raises ValueError naming the
    field, which the config loader reports as one line.
    """
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.type == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{f.name}: must be a boolean")
            continue
        if f.type == "str":
            if not isinstance(value, str):
                raise ValueError(f"{f.name}: must be a string")
            continue
        if isinstance(value, bool):
            raise ValueError(f"{f.name}: must be a number, not a boolean")
        if f.type == "int":
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            if not isinstance(value, int):
                raise ValueError(f"{f.name}: must be an integer")
        else:
            if not isinstance(value, (int, float)):
                raise ValueError(f"{f.name}: must be a number")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{f.name}: must be finite")
        object.__setattr__(obj, f.name, value)
