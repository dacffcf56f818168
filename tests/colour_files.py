"""A small multiple-choice task on disk for the profile tests: solid-colour images and a JSONL file asking their
colour, written the way a user's dataset would be."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from PIL import Image

COLOURS = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 200, 0)}


def write_colour_task(folder: Path, name: str, count: int, question: Callable[[int], str],
                      with_ids: bool = False) -> Path:
    """`count` 36x36 images cycling red, blue, green under `folder`, and folder/name asking `question(i)` of each
    with the three colours as options (ids q0, q1, ... when `with_ids`); returns the JSONL path."""
    path = folder / name
    with open(path, "w") as handle:
        for i in range(count):
            colour = list(COLOURS)[i % len(COLOURS)]
            Image.new("RGB", (36, 36), COLOURS[colour]).save(folder / f"img{i}.png")
            record = {"image": f"img{i}.png", "question": question(i), "options": list(COLOURS), "answer": colour}
            handle.write(json.dumps({"id": f"q{i}", **record} if with_ids else record) + "\n")
    return path
