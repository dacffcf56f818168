"""The shapes benchmark: exact generator PID per task, the generator matches its joint, and it loads as a dataset."""

import random
from collections import Counter

import numpy as np
import pytest

from pidcore.datasets import DatasetError, load_dataset
from pidcore.datasets.shapes import COLOURS, PLANTED, TASKS, draw_item, joint
from pidcore.estimators import discrete_pid

EXPECTED = {"synergy": {"s": 1.0}, "language": {"u2": 2.0}, "vision": {"u1": 2.0}, "redundancy": {"r": 2.0}}


@pytest.mark.parametrize("task", TASKS)
def test_each_task_plants_its_atom_exactly(task):
    exact = discrete_pid(joint(task))
    for atom in ("r", "u1", "u2", "s"):
        assert float(getattr(exact, atom)) == pytest.approx(EXPECTED[task].get(atom, 0.0), abs=1e-6)
    assert PLANTED[task] == next(iter(EXPECTED[task]))


@pytest.mark.parametrize("task", TASKS)
def test_the_generator_draws_from_its_joint(task):
    rng = random.Random(7)
    draws = 20_000
    counts = Counter()
    for _ in range(draws):
        item = draw_item(task, rng)
        counts[(item.x1, item.x2, item.answer)] += 1
    table = joint(task)
    empirical = np.zeros_like(table)
    for (x1, x2, y), count in counts.items():
        empirical[x1, x2, y] = count / draws
    assert np.abs(empirical - table).max() < 0.01
    assert set(counts) == {tuple(index) for index in np.argwhere(table > 0)}


def test_samples_load_as_a_dataset_and_show_their_answer():
    dataset = load_dataset("shapes:vision", limit=24)
    assert len(dataset.samples) == 24 and dataset.name == "shapes-vision"
    for sample in dataset.samples:
        colour = COLOURS[sample.options["ABCD".index(sample.answer)]]
        pixels = np.asarray(sample.image).reshape(-1, 3).astype(int)
        closest = np.abs(pixels - np.array(colour)).sum(1).min()
        assert closest <= 60, (sample.id, closest)
    again = load_dataset("shapes:vision", limit=24)
    assert [s.question for s in again.samples] == [s.question for s in dataset.samples]
    assert np.array_equal(np.asarray(again.samples[5].image), np.asarray(dataset.samples[5].image))


def test_an_unknown_task_is_a_clear_error():
    with pytest.raises(DatasetError, match="unknown shapes task 'nope'; tasks: synergy"):
        load_dataset("shapes:nope")
