"""array_to_blob writes exactly np.save's bytes, and stacked_blobs gives exactly np.stack of blob_to_array's arrays."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from pidcore.store.blobs import array_to_blob, blob_to_array, stacked_blobs

DTYPES = ("bool", "int8", "uint8", "<i2", ">i2", "<i4", ">i4", "<i8", ">i8", "<u4", ">u8", "<f2", ">f2", "<f4", ">f4",
          "<f8", ">f8", "<c8", ">c16", "<U3", "S4", "<M8[s]", "<m8[ms]")
SHAPES = ((), (0,), (1,), (5,), (3, 0), (0, 4), (2, 3), (3, 1, 4), (1, 1, 1, 1), (2, 3, 4, 5), (10 ** 6, 0),
          (1,) * 32, (2,) * 12)


def _saved(array: np.ndarray) -> bytes:
    """What the encoder used before: np.save of the C-contiguous array."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _filled(dtype: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    values = np.random.default_rng(seed).normal(scale=50, size=shape)
    return (values > 0).astype(dtype) if dtype == "bool" else values.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_array_to_blob_is_byte_identical_to_np_save(dtype):
    for seed, shape in enumerate(SHAPES):
        array = _filled(dtype, shape, seed)
        assert array_to_blob(array) == _saved(array), (dtype, shape)
        assert array_to_blob(array) == _saved(array), (dtype, shape)  # the cached header, a second time


@pytest.mark.parametrize("dtype", ("bool", ">i4", "<f2", "<f4", ">f8", "<c16"))
def test_array_to_blob_of_non_contiguous_and_fortran_inputs(dtype):
    base = _filled(dtype, (6, 8, 4), 7)
    for array in (base[::2], base[:, ::3], base[..., 1], base.T, np.asfortranarray(base), base[::-1, :, ::-2],
                  np.broadcast_to(base[0, 0], (5, 4)), base[0, 0, 0], np.float64(3.5).astype(dtype)[()]):
        assert array_to_blob(array) == _saved(array)
        decoded, written = blob_to_array(array_to_blob(array)), np.ascontiguousarray(array)  # 0-d becomes 1-d
        assert decoded.dtype == written.dtype and decoded.shape == written.shape
        assert decoded.tobytes() == written.tobytes()


def test_array_to_blob_of_python_values_and_special_floats():
    for value in ([1.0, 2.5], 3, [[True, False]], [np.nan, np.inf, -np.inf, -0.0], np.float32(-0.0),
                  np.array([np.nan, 1.0], dtype=np.float32)):
        assert array_to_blob(value) == _saved(np.asarray(value))


def test_array_to_blob_with_metadata_or_structure_or_objects_behaves_as_np_save():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tagged = np.zeros(3, dtype=np.dtype(np.float32, metadata={"unit": "bit"}))
        assert array_to_blob(tagged) == _saved(tagged)
    assert [str(warning.message) for warning in caught][:1] == ["metadata on a dtype is not saved to an npy/npz. "
                                                                "Use another format (such as pickle) to store it."]
    record = np.zeros(2, dtype=[("a", "<f4"), ("b", ">i2", (2,))])
    assert array_to_blob(record) == _saved(record)
    with pytest.raises(ValueError, match="Object arrays cannot be saved"):
        array_to_blob(np.array([1, "a"], dtype=object))


def test_array_to_blob_with_a_header_too_long_for_version_1_writes_what_np_save_writes():
    fields = [(f"field_{index:05d}", "<f4") for index in range(4000)]
    array = np.zeros(1, dtype=fields)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert array_to_blob(array) == _saved(array)


@pytest.mark.parametrize("dtype", ("bool", "<f2", ">f4", "<f8", ">i8", "<c8"))
@pytest.mark.parametrize("shape", ((), (3,), (3, 1, 2), (2, 0)))
def test_stacked_blobs_matches_blob_to_array_row_by_row(dtype, shape):
    for count in (1, 2, 5):
        blobs = [array_to_blob(_filled(dtype, shape, seed)) for seed in range(count)]
        stacked = stacked_blobs(blobs)
        if 0 in shape:
            assert stacked is None
            continue
        expected = np.stack([blob_to_array(blob) for blob in blobs])  # native byte order, whatever the stored one
        assert stacked.dtype == expected.dtype and stacked.shape == expected.shape
        assert stacked.tobytes() == expected.tobytes() and stacked.flags.writeable and stacked.flags.c_contiguous


def test_stacked_blobs_declines_what_one_array_cannot_hold():
    one = array_to_blob(np.arange(3.0))
    fortran = io.BytesIO()
    np.save(fortran, np.asfortranarray(np.ones((2, 3))))
    assert stacked_blobs([]) is None
    assert stacked_blobs([one, array_to_blob(np.arange(4.0))]) is None  # another shape
    assert stacked_blobs([one, array_to_blob(np.arange(3, dtype=np.int64))]) is None  # another dtype, same length
    assert stacked_blobs([one, None]) is None and stacked_blobs([None, one]) is None
    assert stacked_blobs([fortran.getvalue()] * 2) is None
    assert stacked_blobs([one + b"extra"] * 2) is None and stacked_blobs([one[:-8]] * 2) is None
    assert stacked_blobs([b"not an npy blob"]) is None
    with pytest.raises(ValueError, match="would need pickle"):
        stacked_blobs([one.replace(b"'<f8'", b"'|O' ")])
