"""What a value must be, in the words users read, for one of pydantic's validation errors.

The daemon's config file (hootwatch.edge.daemon.config) and the trainer's options (hootwatch.trainer.args) are both
checked by pydantic and both say a wrong value the same way ("must be a whole number, got 2.5"). Only words here:
the callers hand in pydantic's error dicts (`ValidationError.errors()`), so the core needs no pydantic to import.
"""

from __future__ import annotations

MUST_BE = {bool: "true or false", int: "a whole number", float: "a number", str: "a string", list: "a list"}
# pydantic's errors for a value of the wrong type (strict models raise these), by the type the value must have
_WRONG_TYPE = {"bool_type": bool, "int_type": int, "int_from_float": int, "float_type": float, "string_type": str,
               "list_type": list}


def must_be(err: dict, wanted: type | None = None, words: dict[type, str] = MUST_BE) -> str | None:
    """What the value of pydantic's error `err` must be: a value of `wanted` (the field's type, where the caller
    knows it) or else of the type the error names, and a finite number for nan or inf where a number is wanted.
    None when the error says nothing of the value's type (a range, a choice, a missing key)."""
    kind = wanted or _WRONG_TYPE.get(err["type"])
    if kind is float and err["type"] == "finite_number":
        return "a finite number"
    return None if kind is None else words[kind]
