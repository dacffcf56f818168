"""The batched readers give what their record-by-record versions give: stage-2 records checked at once over
records of one shape (values bit for bit, every skip reason, every warning), and a run's samples decoded a column
at a time."""

from __future__ import annotations

import copy
import logging
import warnings

import numpy as np
import pytest

from pidcore.pipeline import stage2_records
from pidcore.pipeline.layers import RunSamples, _run_samples, load_run_samples
from pidcore.pipeline.stage2_records import _checked_conversation, _conversations
from pidcore.store import SampleRow, load_samples, write_samples


def _probs(rng: np.random.Generator, n: int, width: int, uniform: bool = False) -> list[float]:
    values = np.full(n, 1.0 / n) if uniform else rng.dirichlet(np.full(n, 0.7))
    if rng.random() < 0.3:
        values = values * (1 + rng.uniform(-9e-4, 9e-4))  # off 1 within the tolerance
    return [float(value) for value in values] + [0.0] * (width - n)


def _record(rng: np.random.Generator, index: int, width: int, n: int, dims: tuple[int, int],
            masses: tuple[bool, bool, bool]) -> dict:
    """One good record of the paper's conversation layout."""
    uniform = rng.random() < 0.2
    gpt = {"from": "gpt", "value": "A", "label": "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[int(rng.integers(n))],
           "v_feature": [float(v) for v in rng.normal(size=dims[0])],
           "l_feature": [float(v) for v in rng.normal(size=dims[1])]}
    for name in ("vl", "v", "l"):
        gpt[f"{name}_prob"] = _probs(rng, n, width, uniform and rng.random() < 0.7)
    for name, given in zip(("vl", "v", "l"), masses):
        if given:
            letters = rng.dirichlet(np.ones(n + 1))[:n] * rng.uniform(0.5, 1.0005)
            gpt[f"{name}_orig_prob"] = [float(v) for v in letters] + [float(v) for v in rng.uniform(0, 1e-3, 2)]
    return {"id": f"r{index}", "image": f"r{index}.png", "num_options": n,
            "conversations": [{"from": "human", "value": "<image>\nWhich option?"}, gpt]}


_BAD_VALUES = {
    "v_feature": (None, [], [float("nan")], [1e300, 1.0], "abc", [[1.0, 2.0]], ["1.5", "2"], [None, 1.0], [True, 0.5],
                  [float("inf")], {"a": 1}),
    "vl_prob": ([-0.1, 1.1], [0.6, 0.6], [0.5, 0.5, 0.0], [1.0], [1.0] + [0.0] * 26, ["0.5", "0.5"], [[0.5, 0.5]],
                [0.0, 0.0], [float("nan"), 1.0], [1e300, 1.0], [0.5, 0.5 + 5e-4], None),
    "v_orig_prob": ([0.1], [-0.1, 0.2, 0.3], [0.9, 0.2], [float("nan"), 0.1], [3e38, 3e38], [], "x", [0.5, 0.5005]),
    "label": ("Z", "", None, 3, " b ", "a", True, "AB"),
}


def _spoiled(rng: np.random.Generator, record: dict) -> object:
    """The record with one thing wrong (or, now and then, right in an unusual way)."""
    choice = int(rng.integers(10))
    if choice == 0:
        return [record, None, 5, "text"][int(rng.integers(4))]
    record = copy.deepcopy(record)
    gpt = record["conversations"][1]
    if choice == 1:
        record["conversations"] = [[{"from": "human"}], "x", [], None][int(rng.integers(4))]
    elif choice == 2:
        record["num_options"] = [True, 1, 27, "2", None, 2.0, 0][int(rng.integers(7))]
    elif choice == 3:
        gpt["l_prob"] = gpt["l_prob"] + [0.0]  # lengths differ within the record
    elif choice == 4:
        gpt["vl_prob"][-1] = 0.01 if len(gpt["vl_prob"]) > record["num_options"] else gpt["vl_prob"][-1]
    else:
        name = ("v_feature", "vl_prob", "v_orig_prob", "label", "v_feature", "label")[choice - 5]
        options = _BAD_VALUES[name]
        gpt[name] = copy.deepcopy(options[int(rng.integers(len(options)))])
    return record


def _records(seed: int, count: int, bad_share: float) -> list:
    rng = np.random.default_rng(seed)
    shapes = [(int(width), int(rng.integers(2, width + 1)), (int(rng.integers(1, 9)), int(rng.integers(1, 9))),
               tuple(bool(v) for v in rng.random(3) < 0.5)) for width in rng.integers(2, 27, size=6)]
    shapes += [(26, 26, (16, 16), (True, True, True)), (9, 8, (4, 4), (True, False, True)), (2, 2, (3, 3),
                                                                                            (False,) * 3)]
    records = []
    for index in range(count):
        record = _record(rng, index, *shapes[int(rng.integers(len(shapes)))])
        records.append(_spoiled(rng, record) if rng.random() < bad_share else record)
    return records


def _assert_same(batched: list, alone: list) -> None:
    assert len(batched) == len(alone)
    for index, (got, expected) in enumerate(zip(batched, alone)):
        if isinstance(expected, str):
            assert got == expected, index
            continue
        assert not isinstance(got, str), (index, got)
        *arrays, gold = got
        *expected_arrays, expected_gold = expected
        assert gold == expected_gold, index
        for array, expected_array in zip(arrays, expected_arrays):
            assert array.dtype == expected_array.dtype and array.shape == expected_array.shape, index
            assert array.tobytes() == expected_array.tobytes(), index


def _checked_both_ways(records: list, widen_uniform: bool) -> tuple[list, list, list, list]:
    with warnings.catch_warnings(record=True) as batched_warnings:
        warnings.simplefilter("always")
        batched = _conversations(records, widen_uniform)
    with warnings.catch_warnings(record=True) as alone_warnings:
        warnings.simplefilter("always")
        alone = [_checked_conversation(record, widen_uniform) for record in records]
    return batched, alone, batched_warnings, alone_warnings


@pytest.mark.parametrize("widen_uniform", (False, True))
@pytest.mark.parametrize("seed", (0, 1, 2))
def test_batched_checks_give_each_record_what_checking_it_alone_gives(monkeypatch, seed, widen_uniform):
    records = _records(seed, 1500, bad_share=0.35)
    alone_calls = []
    monkeypatch.setattr(stage2_records, "_checked_conversation",
                        lambda record, widen: alone_calls.append(record) or _checked_conversation(record, widen))
    batched, alone, batched_warnings, alone_warnings = _checked_both_ways(records, widen_uniform)
    assert len(alone_calls) < len(records) / 2  # most went in batches (one nested list sends its batch alone)
    _assert_same(batched, alone)
    assert [str(w.message) for w in batched_warnings] == [str(w.message) for w in alone_warnings]
    reasons = {reason.split(" ")[0] for reason in alone if isinstance(reason, str)}
    assert sum(not isinstance(found, str) for found in alone) > 500 and len(reasons) >= 8


@pytest.mark.parametrize("width", (3, 8, 9, 17, 26))
def test_batched_sums_are_bit_identical_over_many_records_of_one_shape(monkeypatch, width):
    rng = np.random.default_rng(width)
    records = [_record(rng, index, width, width, (5, 7), (True, True, True)) for index in range(3000)]
    expected = [_checked_conversation(record, True) for record in records]
    monkeypatch.setattr(stage2_records, "_checked_conversation", None)  # every record goes in the one batch
    _assert_same(_conversations(records, True), expected)
    assert not any(isinstance(found, str) for found in expected)


def _rows(run_id: str, count: int, widths: list[int], mass_layers: bool, dtype: str = "<f4") -> list[SampleRow]:
    rng = np.random.default_rng(count)
    rows = []
    for index in range(count):
        width = widths[index % len(widths)]
        probs = rng.dirichlet(np.ones(width), size=(3, 2)).astype(dtype)
        mass = rng.uniform(0, 1, (3, 2) if mass_layers else 3).astype(dtype)
        rows.append(SampleRow(run_id, f"s{index}", index, None if index % 5 == 0 else index % width,
                              rng.normal(size=6).astype(dtype), rng.normal(size=4).astype(dtype), probs, mass,
                              [None, "fit", "evaluation"][index % 3]))
    return rows


def _assert_same_samples(got: RunSamples, expected: RunSamples) -> None:
    assert got.ids == expected.ids and got.split == expected.split
    for name in ("gold", "x1", "x2", "probs", "mass"):
        array, expected_array = getattr(got, name), getattr(expected, name)
        assert array.dtype == expected_array.dtype and array.shape == expected_array.shape, name
        assert array.tobytes() == expected_array.tobytes() and array.flags.writeable, name


@pytest.mark.parametrize(("count", "widths", "mass_layers", "dtype"), [
    (40, [4], False, "<f4"), (40, [4], True, "<f4"), (1, [2], False, "<f4"), (30, [3], False, ">f4"),
    (30, [5], True, "<f8"), (45, [4, 4, 3], False, "<f4"), (45, [4, 3, 3], True, "<f4")])
def test_a_run_read_by_column_is_the_run_read_row_by_row(tmp_path, caplog, count, widths, mass_layers, dtype):
    db = str(tmp_path / "samples.duckdb")
    write_samples(db, _rows("run", count, widths, mass_layers, dtype))
    write_samples(db, _rows("other", 7, [2], not mass_layers))
    with caplog.at_level(logging.WARNING, logger="pidcore.pipeline.layers"):
        got = load_run_samples(db, "run")
        by_column = [record.getMessage() for record in caplog.records]
        caplog.clear()
        expected = _run_samples("run", load_samples(db, "run"))
        by_row = [record.getMessage() for record in caplog.records]
    _assert_same_samples(got, expected)
    assert by_column == by_row and (len(by_row) == 1) == (len(set(widths)) > 1)


def test_a_run_without_samples_is_refused_as_before(tmp_path):
    db = str(tmp_path / "samples.duckdb")
    write_samples(db, _rows("other", 3, [2], False))
    with pytest.raises(ValueError, match="^run missing has no stored samples to estimate atoms from$"):
        load_run_samples(db, "missing")
