"""JSON Schemas of summary.json shipped with the package, and a checker.

``summary.schema.json`` is this project's full contract; ``seed_summary.schema.json``
is the reference document's schema verbatim. Every summary the code writes must
satisfy both (tests enforce it; runs warn if one ever does not).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SCHEMAS = ("summary.schema.json", "seed_summary.schema.json")


@cache
def load_schema(name: str = "summary.schema.json") -> dict[str, Any]:
    return json.loads(resources.files("mammography.run").joinpath(name).read_text("utf-8"))


def schema_problems(document: dict[str, Any]) -> list[str]:
    """Human-readable violations of either schema (empty when valid)."""
    import jsonschema

    problems: list[str] = []
    for name in SCHEMAS:
        validator = jsonschema.Draft7Validator(load_schema(name))
        for error in validator.iter_errors(document):
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            problems.append(f"{name}: {where}: {error.message}")
    return problems
