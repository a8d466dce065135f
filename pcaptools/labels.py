"""Category columns as Python strings, converted once per category instead of once per row.

pandas 3 turns ``col.astype(str)`` of a categorical into an Arrow string array built element by
element, and ``.to_numpy(object)`` makes Python strings of it again element by element: seconds for a
million-row hops table. A categorical's strings are its categories' strings taken by code;
:func:`as_strings` does that and returns exactly what ``col.astype(str).to_numpy(object)`` returns
(NaN where a value is missing).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def as_strings(col: pd.Series | pd.Categorical) -> np.ndarray:
    """``str`` of every value as an object array, NaN where missing (a categorical: one ``str`` per category)."""
    cat = col.array if isinstance(col, pd.Series) else col
    if not isinstance(cat.dtype, pd.CategoricalDtype):
        return pd.Series(col).astype(str).to_numpy(object)
    names = np.array([str(c) for c in cat.categories] + [np.nan], dtype=object)
    return names[np.asarray(cat.codes, np.int64)]  # code -1 (missing) takes the trailing NaN


def categorical(values: np.ndarray, codes: np.ndarray) -> pd.Categorical:
    """``pd.Categorical(values[codes])`` for a short object array of strings, built from codes (no per-row hashing);
    a code -1 is a missing value, as ``None`` would be."""
    uniq, inverse = np.unique(values, return_inverse=True)  # sorted, as pandas sorts string categories
    codes = np.asarray(codes, np.int64)
    c = np.append(inverse.reshape(-1), -1)[codes]  # code -1 takes the trailing -1
    used = np.flatnonzero(np.bincount(c[c >= 0], minlength=len(uniq)))
    remap = np.full(len(uniq) + 1, -1, np.int64)  # the trailing -1 keeps missing values missing
    remap[used] = np.arange(len(used))
    return pd.Categorical.from_codes(remap[c], categories=list(uniq[used]))


def strings(names: list[str], codes: np.ndarray) -> pd.api.extensions.ExtensionArray | np.ndarray:
    """What pandas makes of ``np.array(names)[codes]`` in a column (its default string dtype), built from the codes:
    Arrow takes the few names by code instead of pandas converting every row's string."""
    if _arrow_string_dtype() is None:
        return np.array(names)[codes]
    import pyarrow as pa

    return arrow_strings(pa.DictionaryArray.from_arrays(pa.array(np.asarray(codes, np.int32)), pa.array(list(names), pa.large_string())))


def arrow_strings(arr) -> pd.api.extensions.ExtensionArray | np.ndarray:  # noqa: ANN001 - a pyarrow array of strings
    """What pandas makes of the strings of the Arrow array ``arr`` in a column (its default string dtype): ``arr``
    itself when that dtype keeps its strings in Arrow, else their Python strings."""
    want = _arrow_string_dtype()
    if want is None:
        return arr.to_numpy(zero_copy_only=False)
    import pyarrow as pa

    return pd.arrays.ArrowStringArray(arr.cast(pa.large_string()), dtype=want)


def _arrow_string_dtype() -> pd.StringDtype | None:
    """pandas' default string dtype when it keeps strings in Arrow (pandas 3), else None."""
    want = pd.Series(np.array([""])).dtype
    return want if isinstance(want, pd.StringDtype) and want.storage == "pyarrow" else None


def category_codes(col: pd.Series) -> tuple[np.ndarray, list[str]]:
    """(codes, category strings) of a category or string column: -1 where missing (strings made once per category)."""
    cat = col.array if isinstance(col.dtype, pd.CategoricalDtype) else pd.Categorical(col)
    return np.asarray(cat.codes, np.int64), [str(c) for c in cat.categories]


def vocabulary(*cols: pd.Series) -> pd.Index:
    """The sorted strings of the categories of ``cols``: a shared vocabulary for :func:`codes_in` (codes compare equal
    exactly when the values do)."""
    names: set[str] = set()
    for c in cols:
        names.update(category_codes(c)[1] if isinstance(c.dtype, pd.CategoricalDtype) else map(str, c.dropna().unique()))
    return pd.Index(sorted(names))


def codes_in(col: pd.Series, vocab: pd.Index) -> np.ndarray:
    """Codes of a category/string column in a shared vocabulary (-1 where missing or unknown)."""
    cat = col.array if isinstance(col.dtype, pd.CategoricalDtype) else pd.Categorical(col)
    m = vocab.get_indexer(pd.Index([str(c) for c in cat.categories], dtype=object))
    return np.append(m, -1).astype(np.int64)[np.asarray(cat.codes)]  # code -1 (missing) takes the trailing -1
