"""Parquet columns become RawColumns as pyarrow's own conversion would have them, without pandas."""

from __future__ import annotations

import decimal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pa = pytest.importorskip("pyarrow")

from agent.ml.tables import arrow_column  # noqa: E402


@pytest.mark.parametrize("array", [
    pa.array([1.0, None, 3.5, float("nan"), float("inf")]),
    pa.array([1, None, 3], type=pa.int64()),
    pa.array([1, None, 3, 4, None, 6, 7, 8, 9, None, 11], type=pa.int8()).slice(3),  # an offset into the bitmap
    pa.array([1.5, None], type=pa.float32()),
    pa.array([decimal.Decimal("1.25"), None]),
    pa.chunked_array([[1.0, 2.0], [None, 4.0]]),
    pa.array([], type=pa.float64()),
    pa.array([None, None], type=pa.float64()),
])
def test_numbers_are_pyarrows_with_nan_for_null(array) -> None:
    column = arrow_column(array)
    expected = np.asarray(array.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float)
    np.testing.assert_array_equal(column.numbers, expected)
    assert column.numbers.flags.writeable and column.numbers.dtype == np.float64
    assert list(column.strings) == [None] * len(array)


def test_strings_keep_none_for_null() -> None:
    column = arrow_column(pa.array(["a", None, "c", "d"]).slice(1))
    assert list(column.strings) == [None, "c", "d"]
    assert column.strings.dtype == object and np.isnan(column.numbers).all()


def test_reading_parquet_does_not_import_pandas(tmp_path) -> None:
    # pyarrow's own conversions try `import pandas` where it is installed (a fifth of a second or more);
    # the reader must not even try, which a finder that records every attempt shows with or without pandas.
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"x": pa.array([1.0, None, 2.0]), "s": pa.array(["a", None, "b"])}), path)
    code = textwrap.dedent(f"""
        import sys
        tried = []

        class Recorder:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "pandas":
                    tried.append(name)
                return None

        sys.meta_path.insert(0, Recorder())
        from agent.ml.tables import TableFile
        table = TableFile({str(path)!r}, progress=False).read()
        assert table.rows == 3, table.rows
        print(tried)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
