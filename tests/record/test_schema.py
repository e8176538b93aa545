"""The schema check: fastjsonschema's quick yes agrees with jsonschema, the reference."""

import copy

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from mammography.record.schema import OWN_SCHEMA, SEED_SCHEMA, load_schema, schema_problems
from tests.runs.conftest import make_summary

VALID = make_summary("/tmp/outputs/results_1")
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False, width=32)
    | st.sampled_from(["", "completed", "running", "results_7", "a1b2c3d", "0" * 40,
                       "density_classification", "hyperparameter_search", "x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                 max_size=3),
    max_leaves=6)


def _paths(document, prefix=()):
    yield prefix
    if isinstance(document, dict):
        for key, value in document.items():
            yield from _paths(value, (*prefix, key))


PATHS = [p for p in _paths(VALID) if p]


def _reference(document):
    names = [OWN_SCHEMA] + ([SEED_SCHEMA] if document.get("experiment_type") in (
        "embedding_extraction", "density_classification", "evaluation") else [])
    return [e for name in names
            for e in jsonschema.Draft7Validator(load_schema(name)).iter_errors(document)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(PATHS), JSON_VALUES | st.just("<delete>")),
                min_size=1, max_size=3))
def test_the_quick_check_agrees_with_jsonschema(changes):
    document = copy.deepcopy(VALID)
    for path, value in changes:
        holder = document
        for key in path[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if not isinstance(holder, dict):
            continue
        if value == "<delete>":
            holder.pop(path[-1], None)
        else:
            holder[path[-1]] = value
    assert bool(schema_problems(document)) == bool(_reference(document))


def test_a_valid_summary_has_no_problems_and_a_broken_one_names_them():
    assert schema_problems(VALID) == []
    broken = copy.deepcopy(VALID)
    broken["environment"]["packages"]["numpy"] = 2
    broken["status"] = "done"
    problems = schema_problems(broken)
    assert any("environment/packages/numpy" in p for p in problems)
    assert any(p.startswith("summary.schema.json: status:") for p in problems)
