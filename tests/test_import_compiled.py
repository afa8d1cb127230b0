"""The compiled rules of `acards import` (per distinct value, not per record) give what the plain
rules give: the same value, or a skip with the same reason and words, for every kind of value."""

from __future__ import annotations

import pytest

from acards.importers.mapping import _MISSING, RECORD_FIELDS, Skip, _compiled, _Fail, _rule, coerce, field_outcome, lookup

VALUES = ["a", "1", " 2 ", "-3", "3.5", "nan", "", 0, 1, -4, 2.0, -0.0, 0.5, True, False, None, [1], {"k": 1}]
SPECS = [
    {"field": "x"}, {"field": "x", "default": "d"}, {"field": "x", "default": 7}, {"field": "x", "optional": True},
    {"field": "x", "map": {"a": "audit", "1": 2, "2.0": "two", "true": 1, "[1]": "list"}},
    {"field": "x", "map": {"a": 1}, "default": 0}, {"field": "y.x"}, {"field": "l.0"}, {"field": "l.5", "default": 1},
    {"pattern": "^a", "then": "audit", "else": "deploy"}, {"pattern": "(?i)A|3", "then": 1},
    {"pattern": "a", "in": "x", "then": "audit", "else": 2.5}, {"value": "c"},
]


def _value(rule, record, prompt):
    """The plain, per-record reading of a rule (what the compiled rules replace): its coerced value,
    or _MISSING where an optional default does not apply."""
    try:
        return coerce(rule.target, rule.apply(record, prompt))
    except Skip:
        if rule.optional:
            return _MISSING
        raise


def _outcome(function):
    try:
        value = function()
    except Skip as skip:
        return ("skip", skip.reason, skip.detail)
    return ("value", type(value), repr(value)) if value is not _MISSING else ("missing",)


@pytest.mark.parametrize("target", RECORD_FIELDS)
@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_a_compiled_rule_gives_what_the_rule_gives(target, spec):
    rule = _rule(target, spec, f"/fields/{target}", lambda pointer: None)
    compiled = _compiled(rule)
    for repeat in range(2):  # the second pass is answered from the per-value cache
        for value in VALUES:
            for record in ({"x": value, "y": {"x": value}, "l": [value]}, {}, {"y": value, "l": value}, [value]):
                prompt = value if isinstance(value, str) else None
                assert _outcome(lambda: compiled(record, prompt)) == _outcome(lambda: _value(rule, record, prompt)), \
                    (repeat, value, record)


@pytest.mark.parametrize("target", RECORD_FIELDS)
@pytest.mark.parametrize("spec", [spec for spec in SPECS if "field" in spec], ids=str)
def test_a_field_rule_per_distinct_value_gives_what_the_rule_gives(target, spec):
    """field_outcome (the batch import's, per distinct value) against the per-record rule."""
    rule = _rule(target, spec, f"/fields/{target}", lambda pointer: None)
    outcome = field_outcome(rule)
    for value in VALUES:
        for record in ({"x": value, "y": {"x": value}, "l": [value]}, {}, {"y": value, "l": value}):
            found = outcome(lookup(record, rule.field))
            given = ("skip", found.reason, found.detail) if type(found) is _Fail else \
                ("missing",) if found is _MISSING else ("value", type(found), repr(found))
            assert given == _outcome(lambda: _value(rule, record, None)), (value, record)
