"""pcaptools.labels: category columns as strings by category give exactly what pandas' per-row conversion gives."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pcaptools.labels import as_strings, categorical


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype == object and len(a) == len(b) and all(
        (x == y and type(x) is type(y)) or (x != x and y != y) for x, y in zip(a.tolist(), b.tolist(), strict=True)
    )


def test_as_strings_of_a_categorical_with_missing_values_equals_astype_str():
    col = pd.Series(pd.Categorical(["10.0.0.2", None, "fd00::1", "10.0.0.2", None], categories=["fd00::1", "10.0.0.2", "x"]))
    assert _same(as_strings(col), col.astype(str).to_numpy(object))


def test_as_strings_of_non_string_categories_and_plain_columns_equals_astype_str():
    for col in (pd.Series(pd.Categorical([3, 1, 3])), pd.Series(["a", None, "b"]), pd.Series([1, 2], dtype=np.int64)):
        assert _same(as_strings(col), col.astype(str).to_numpy(object))


def test_categorical_from_codes_equals_pandas_categorical_of_the_values():
    values = np.array(["node-2", "", "node-1", "node-2", "pod-a"], object)  # repeated and unused names
    codes = np.array([0, 1, 1, 2, 3, 0, 2])
    got, want = categorical(values, codes), pd.Categorical(values[codes])
    assert got.equals(want) and list(got.categories) == list(want.categories)


def test_categorical_code_minus_one_is_a_missing_value_as_none_is():
    values = np.array(["node-2", "node-1", "pod-a"], object)
    codes = np.array([0, -1, 1, 0, -1])
    got = categorical(values, codes)
    want = pd.Categorical([values[c] if c >= 0 else None for c in codes])
    assert got.equals(want) and list(got.categories) == list(want.categories)
