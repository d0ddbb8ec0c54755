"""A run's rows and numpy columns as Arrow arrays, built from their buffers.

pyarrow's own conversion (pa.array, pa.table on Python values) imports pandas on its first call,
to ask whether the values are pandas objects: a second of a run's start-up and 40 MB, for tables
that never were. The values a run writes are plain (Python bool, int, float, str or None; numpy
arrays of numbers, bools or strings), and Arrow's layout for those is a few buffers. Columns
come out as pa.array would infer them: int64, double (ints and floats mixed), bool, string, null
where every value is None, None a null. Anything else goes through pa.array.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

# pa.array's inference for a column of these Python types (None left out), in this order
_INFERRED = ((frozenset({bool}), pa.bool_(), np.bool_), (frozenset({int}), pa.int64(), np.int64),
             (frozenset({float}), pa.float64(), np.float64), (frozenset({int, float}), pa.float64(), np.float64))


def _bits(flags: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(flags, bitorder="little"))


def _strings(values: list, valid: np.ndarray) -> pa.Array:
    encoded = [value.encode() if ok else b"" for value, ok in zip(values, valid)]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return pa.Array.from_buffers(pa.string(), len(values), [_validity(valid), pa.py_buffer(offsets),
                                                             pa.py_buffer(b"".join(encoded))])


def _validity(valid: np.ndarray):
    return None if valid.all() else _bits(valid)


def _from_numpy(values: np.ndarray) -> pa.Array:
    if values.dtype.kind == "U":
        return _strings(values.tolist(), np.ones(len(values), dtype=bool))
    if values.dtype == np.bool_:
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, _bits(values)])
    if values.dtype.kind in "iuf":
        values = np.ascontiguousarray(values)
        return pa.Array.from_buffers(pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)])
    return pa.array(values)


def _from_list(values: list) -> pa.Array:
    valid = np.array([value is not None for value in values], dtype=bool)
    kinds = frozenset(type(value) for value in values if value is not None)
    if not kinds:
        return pa.nulls(len(values))
    if kinds == {str}:
        return _strings(values, valid)
    for inferred_kinds, arrow_type, dtype in _INFERRED:
        if kinds == inferred_kinds:
            data = np.array([value if ok else 0 for value, ok in zip(values, valid)], dtype=dtype)
            buffer = _bits(data) if dtype is np.bool_ else pa.py_buffer(data)
            return pa.Array.from_buffers(arrow_type, len(values), [_validity(valid), buffer])
    return pa.array(values)


def column(values: list | np.ndarray | pa.Array) -> pa.Array:
    """One column: a list of Python values, a 1-d numpy array, or an Arrow array as it is."""
    if isinstance(values, pa.Array):
        return values
    return _from_numpy(values) if isinstance(values, np.ndarray) else _from_list(values)


def repeated(value, n: int) -> pa.Array:
    """The column `column([value] * n)` is, built from one value instead of a list of n."""
    if n == 0 or value is None:
        return pa.nulls(n)
    if isinstance(value, str):
        encoded = value.encode()
        offsets = np.arange(n + 1, dtype=np.int32) * len(encoded)
        return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(encoded * n)])
    zeros = pa.Array.from_buffers(pa.int32(), n, [None, pa.py_buffer(np.zeros(n, dtype=np.int32))])
    return column([value]).take(zeros)


def table(columns: dict[str, list | np.ndarray | pa.Array]) -> pa.Table:
    return pa.Table.from_arrays([column(values) for values in columns.values()], names=list(columns))
