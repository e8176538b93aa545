"""JSON Schemas of summary.json shipped with the package, and a checker.

``summary.schema.json`` is this project's full contract (every run);
``seed_summary.schema.json`` is the reference document's schema verbatim,
which every run of the three commands it knows (embed, train-density,
eval-export: its ``experiment_type`` enum) must satisfy too. Runs of newer
kinds (a tune run, ``hyperparameter_search``) are checked against ours only:
the seed's enum would refuse them, and pretending to be a training run is
what let eval-export mistake a search for a model.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from mammography.record.contract import SEED_EXPERIMENT_TYPES

OWN_SCHEMA = "summary.schema.json"
SEED_SCHEMA = "seed_summary.schema.json"
SCHEMAS = (OWN_SCHEMA, SEED_SCHEMA)


@cache
def load_schema(name: str = OWN_SCHEMA) -> dict[str, Any]:
    return json.loads(resources.files("mammography.record").joinpath(name).read_text("utf-8"))


@cache
def _validator(name: str) -> Any:
    import jsonschema

    return jsonschema.Draft7Validator(load_schema(name))


@cache
def _fast_check(name: str) -> Any:
    """The schema compiled to Python by fastjsonschema (~20x faster than jsonschema on a
    summary: its packages map alone is hundreds of properties): a quick yes for a valid
    document. As jsonschema here: no ``format`` checks, and no defaults filled in."""
    import fastjsonschema

    return fastjsonschema.compile(load_schema(name), use_default=False, use_formats=False)


def schemas_for(document: dict[str, Any]) -> tuple[str, ...]:
    """The schemas ``document`` must satisfy."""
    if document.get("experiment_type") in SEED_EXPERIMENT_TYPES:
        return SCHEMAS
    return (OWN_SCHEMA,)


def schema_problems(document: dict[str, Any]) -> list[str]:
    """Human-readable violations of the schemas that apply (empty when valid).

    A document the compiled check accepts is valid; any other is explained by
    jsonschema (every violation, with its place), which is the reference."""
    import fastjsonschema

    problems: list[str] = []
    for name in schemas_for(document):
        try:
            _fast_check(name)(document)
            continue
        except fastjsonschema.JsonSchemaException:
            pass
        for error in _validator(name).iter_errors(document):
            where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
            problems.append(f"{name}: {where}: {error.message}")
    return problems
