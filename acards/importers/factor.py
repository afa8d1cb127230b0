"""A column of an import as a factor: its distinct values and one code per record, so that the
rules, the schema checks and the JSON encoding run once per distinct value (acards.importers.batch)."""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np


class Factor:
    """A column as its distinct values and one code (index into ``values``) per row."""

    __slots__ = ("codes", "values", "_kinds")

    def __init__(self, codes: np.ndarray, values: list, kinds: set | None = None):
        self.codes, self.values, self._kinds = codes, values, kinds

    @property
    def kinds(self) -> set:
        """The types of the values (found once: the rules, the checks and the writing all ask)."""
        if self._kinds is None:
            try:
                "".join(self.values)  # most columns are texts: joining them is the quickest proof (it refuses anything else)
                self._kinds = {str} if self.values else set()
            except TypeError:
                self._kinds = set(map(type, self.values))
        return self._kinds

    def take(self, rows: np.ndarray) -> "Factor":
        return Factor(self.codes[rows], self.values, self._kinds)

    def mapped(self, function: Callable[[Any], Any]) -> "Factor":
        return Factor(self.codes, [function(value) for value in self.values])

    def mask(self, test: Callable[[Any], bool]) -> np.ndarray:
        """Per row: ``test`` of its value."""
        return np.fromiter(map(test, self.values), bool, len(self.values))[self.codes]

    def rows(self) -> list:
        return list(map(self.values.__getitem__, self.codes.tolist()))


def constant(value: Any, count: int) -> Factor:
    return Factor(np.zeros(count, np.intp), [value])


def factorize(values: list) -> Factor:
    """The Factor of a list of JSON values; two values share a code only when they are the same
    type and equal (and floats the same bits: 0.0 and -0.0 are written differently)."""
    kinds = set(map(type, values))
    if kinds == {float}:
        positions = dict(zip(dict.fromkeys(values), itertools.count()))
        if 0.0 not in positions and all(value == value for value in positions):  # no ±0.0, no NaN: equal is same bits
            return Factor(np.fromiter(map(positions.__getitem__, values), np.intp, len(values)), list(positions))
        _, first, codes = np.unique(np.array(values, np.float64).view(np.int64), return_index=True, return_inverse=True)
        return Factor(codes.reshape(-1), [values[i] for i in first.tolist()])
    if len(kinds & {bool, int, float}) <= 1 and not kinds & {float, list, dict}:
        positions = dict(zip(dict.fromkeys(values), itertools.count()))
        return Factor(np.fromiter(map(positions.__getitem__, values), np.intp, len(values)), list(positions))
    positions, codes, distinct = {}, [], []
    for value in values:
        key = _key(value)
        code = positions.get(key)
        if code is None:
            code = positions[key] = len(distinct)
            distinct.append(value)
        codes.append(code)
    return Factor(np.array(codes, np.intp), distinct)


def _key(value: Any) -> Any:
    if value.__class__ is float:
        return (float, value.hex())
    if value.__class__ in (list, dict):
        return object()  # not hashable: a code of its own
    return (value.__class__, value)
