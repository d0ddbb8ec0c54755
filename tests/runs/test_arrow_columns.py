"""lossbench.runs.arrow_columns builds Arrow arrays from buffers, without pyarrow's conversion (which
imports pandas): each column must come out exactly as pa.array would make it, type and values."""

import math

import numpy as np
import pyarrow as pa
import pytest

from lossbench.runs.arrow_columns import column, repeated, table

COLUMNS = {
    "ints": [3, -1, 2**40],
    "floats with nan and inf": [0.5, math.nan, -math.inf],
    "ints and floats": [1, 2.5, None],
    "bools": [True, False, None, True, True, False, False, True, True],
    "strings": ["ce", "bce_logits", None, "ünïcode", ""],
    "all none": [None, None],
    "empty": [],
    "ints with none": [None, 7],
    "numpy int64": np.arange(5, dtype=np.int64),
    "numpy float16": np.array([0.1, 1 / 3, np.nan], dtype=np.float16),
    "numpy float32 strided": np.arange(10, dtype=np.float32)[::3],
    "numpy bool": np.array([True, False, True] * 5),
    "numpy str": np.array(["last", "selected", "last"]),
}


@pytest.mark.parametrize("name", COLUMNS)
def test_a_column_from_buffers_equals_pyarrows_own_conversion(name):
    values = COLUMNS[name]
    built, expected = column(values), pa.array(values)
    assert built.type == expected.type
    assert built.null_count == expected.null_count
    assert repr(built.to_pylist()) == repr(expected.to_pylist())  # repr: nan equals nan


def test_a_table_keeps_column_order_and_names():
    built = table({"b": [1, 2], "a": np.array(["x", "y"])})
    assert built.column_names == ["b", "a"]
    assert built.to_pylist() == [{"b": 1, "a": "x"}, {"b": 2, "a": "y"}]


@pytest.mark.parametrize("value", ["mnist", "", "ünïcode", 3, 2.5, True, None])
@pytest.mark.parametrize("n", [0, 1, 1000])
def test_a_repeated_value_is_the_column_of_its_list(value, n):
    made, listed = repeated(value, n), column([value] * n)
    assert made.type == listed.type and made.equals(listed)
