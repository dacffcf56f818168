"""A synthetic multiple-choice VQA benchmark of rendered shapes whose tasks plant known information regimes.

Each task draws two latent variables, one shown by the image (x1: the shape's colour) and one carried by the
question (x2), and the answer y from them:

| task       | x2 (question)                          | answer                         | planted atom |
|------------|----------------------------------------|--------------------------------|--------------|
| synergy    | the colour asked about ("Is it blue?") | yes iff the colours match      | S            |
| language   | an object with a known colour          | the object's colour            | U2           |
| vision     | a paraphrase of "what colour is it?"   | the shape's colour             | U1           |
| redundancy | the colour, stated in the question     | the shape's colour             | R            |

`joint(task)` is the exact P[x1, x2, y] of the generator, so its PID can be computed exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from pidcore.atoms import LETTERS
from pidcore.datasets.sample import DatasetError, LoadedDataset, Sample

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 80, 230), "yellow": (235, 215, 40)}
COLOUR_NAMES = list(COLOURS)
SHAPES = ("circle", "square", "triangle")
OBJECTS = {"a tomato": "red", "grass": "green", "the sky": "blue", "a banana": "yellow"}
PARAPHRASES = ("What colour is the shape?", "Which colour does the shape have?", "Name the colour of the shape.",
               "Tell me the colour of the shape.")
YES_NO = ["yes", "no"]
TASKS = ("synergy", "language", "vision", "redundancy")
PLANTED = {"synergy": "s", "language": "u2", "vision": "u1", "redundancy": "r"}
IMAGE_SIZE = 32
EVAL_SEED = 1_000
DEFAULT_COUNT = 256


@dataclass(frozen=True)
class Item:
    """One generated question before rendering: the latents, the texts and the gold option index."""

    x1: int
    x2: int
    question: str
    options: list[str]
    answer: int


def draw_item(task: str, rng: random.Random) -> Item:
    """Draw the latents of one question of `task` and phrase it."""
    if task not in TASKS:
        raise ValueError(f"unknown shapes task {task!r}; tasks: {', '.join(TASKS)}")
    colour = rng.randrange(len(COLOUR_NAMES))
    if task == "synergy":
        asked = colour if rng.random() < 0.5 else rng.choice([c for c in range(len(COLOUR_NAMES)) if c != colour])
        return Item(colour, asked, f"Is the shape {COLOUR_NAMES[asked]}?", YES_NO, 0 if asked == colour else 1)
    if task == "language":
        thing = rng.randrange(len(OBJECTS))
        name = list(OBJECTS)[thing]
        return Item(colour, thing, f"What colour is {name}?", COLOUR_NAMES, COLOUR_NAMES.index(OBJECTS[name]))
    if task == "vision":
        phrase = rng.randrange(len(PARAPHRASES))
        return Item(colour, phrase, PARAPHRASES[phrase], COLOUR_NAMES, colour)
    return Item(colour, colour, f"The shape is {COLOUR_NAMES[colour]}. What colour is the shape?", COLOUR_NAMES,
                colour)


def joint(task: str) -> np.ndarray:
    """The generator's exact joint distribution P[x1, x2, y] (enumerated, not sampled)."""
    colours = len(COLOUR_NAMES)
    if task == "synergy":
        table = np.zeros((colours, colours, 2))
        for colour in range(colours):
            table[colour, colour, 0] = 0.5 / colours
            for other in set(range(colours)) - {colour}:
                table[colour, other, 1] = 0.5 / colours / (colours - 1)
        return table
    if task == "language":
        table = np.zeros((colours, len(OBJECTS), colours))
        for thing, name in enumerate(OBJECTS):
            table[:, thing, COLOUR_NAMES.index(OBJECTS[name])] = 1 / colours / len(OBJECTS)
        return table
    if task == "vision":
        table = np.zeros((colours, len(PARAPHRASES), colours))
        for colour in range(colours):
            table[colour, :, colour] = 1 / colours / len(PARAPHRASES)
        return table
    if task == "redundancy":
        table = np.zeros((colours, colours, colours))
        for colour in range(colours):
            table[colour, colour, colour] = 1 / colours
        return table
    raise ValueError(f"unknown shapes task {task!r}; tasks: {', '.join(TASKS)}")


def render(colour: int, rng: random.Random, kind: str | None = None) -> Image.Image:
    """A shape of the given colour and kind (random if None), random size and position, on a light background."""
    background = tuple(rng.randrange(200, 240) for _ in range(3))
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), background)
    draw = ImageDraw.Draw(image)
    size = rng.randrange(12, 20)
    left, top = rng.randrange(1, IMAGE_SIZE - size), rng.randrange(1, IMAGE_SIZE - size)
    box = (left, top, left + size, top + size)
    fill = tuple(max(0, min(255, channel + rng.randrange(-20, 21))) for channel in COLOURS[COLOUR_NAMES[colour]])
    shape = kind or rng.choice(SHAPES)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(left + size // 2, top), (left, top + size), (left + size, top + size)], fill=fill)
    return image


def caption(colour: int) -> str:
    """A caption of a rendered shape, for projector alignment (stage 1)."""
    return f"The shape is {COLOUR_NAMES[colour]}."


def generate(task: str, count: int, seed: int = EVAL_SEED) -> list[Sample]:
    """`count` rendered samples of `task`, deterministic for a seed; ids are task-index."""
    rng = random.Random(f"{task}-{seed}")
    samples = []
    for index in range(count):
        item = draw_item(task, rng)
        samples.append(Sample(id=f"{task}-{index}", image=render(item.x1, rng), question=item.question,
                              options=list(item.options), answer=LETTERS[item.answer], hint=None))
    return samples


def load(task: str, limit: int | None = None) -> LoadedDataset:
    """The evaluation split of a task as a dataset (`--dataset shapes:TASK`), DEFAULT_COUNT samples unless limited."""
    if task not in TASKS:
        raise DatasetError(f"unknown shapes task {task!r}; tasks: {', '.join(TASKS)}")
    return LoadedDataset(name=f"shapes-{task}", samples=generate(task, limit or DEFAULT_COUNT))
