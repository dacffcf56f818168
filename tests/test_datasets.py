"""Dataset loaders: each format loads its good rows, skips every kind of bad row with its reason, and fails clearly."""

from __future__ import annotations

import base64
import io
import json
import logging
import re
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image

from pidcore.datasets import DatasetError, LoadedDataset, Sample, load_dataset
from pidcore.datasets import images as image_module

RED = (220, 30, 30)
GREEN = (30, 200, 60)
BLUE = (20, 40, 230)
GREY = (128, 128, 128)
INSTRUCTION = "Answer with the option's letter from the given choices directly."

Expected = tuple[str, str, list[str], str | None, str | None, tuple[int, int], tuple[int, int, int]]
Fixture = tuple[str, list[Expected], list[tuple[str, str]]]


def encode(size: tuple[int, int], color: tuple[int, int, int], fmt: str = "PNG", mode: str = "RGB") -> bytes:
    """A small solid image encoded as `fmt`, converted to `mode` first (e.g. "L" to test the RGB conversion)."""
    buffer = io.BytesIO()
    Image.new("RGB", size, color).convert(mode).save(buffer, fmt)
    return buffer.getvalue()


def b64(data: bytes) -> str:
    """Base64 text of `data`."""
    return base64.b64encode(data).decode("ascii")


def put(path: Path, data: bytes) -> None:
    """Write bytes to `path`, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def truncated_jpeg() -> bytes:
    """The first half of a valid JPEG: it opens, then fails to decode."""
    data = encode((40, 30), BLUE, "JPEG")
    return data[: len(data) // 2]


def write_lines(path: Path, lines: list[Any]) -> None:
    """Write a JSON Lines file; str items are written verbatim (to plant broken lines), the rest as JSON."""
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")


def mmbench_row(index: int, question: str = "Q?", options: tuple[str, ...] = ("a", "b", "", ""), answer: str = "",
                hint: str = "", image: str = "") -> dict[str, Any]:
    """One MMBench TSV row with options in columns A..D."""
    return {"index": index, "question": question, "hint": hint, **dict(zip("ABCD", options)), "answer": answer,
            "image": image}


def write_mmbench(tmp_path: Path) -> Fixture:
    """An MMBench TSV with three good rows (one reusing another's image by index) and seven bad ones."""
    red = b64(encode((4, 3), RED))
    rows = [
        mmbench_row(10, "What colour is the square?", ("red", "green", "None", "blue"), "A", "Look closely.", red),
        mmbench_row(11, "How many?", ("1", "2", "3", ""), "C", "", b64(encode((5, 5), GREEN, "JPEG"))),
        mmbench_row(12, "Same image?", ("yes", "no", "", ""), image="10"),
        mmbench_row(13, image="!!!not-base64!!!"),
        mmbench_row(14, image=b64(b"definitely not an image")),
        mmbench_row(15, options=("only", "", "", ""), image=red),
        mmbench_row(16, options=("x", "", "z", ""), image=red),
        mmbench_row(17, options=("x", "y", "", ""), answer="D", image=red),
        mmbench_row(18, question="", image=red),
        mmbench_row(19, image=""),
    ]
    path = tmp_path / "mmbench_dev.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    expected = [
        ("10", "What colour is the square?", ["red", "green", "None", "blue"], "A", "Look closely.", (4, 3), RED),
        ("11", "How many?", ["1", "2", "3"], "C", None, (5, 5), GREEN),
        ("12", "Same image?", ["yes", "no"], None, None, (4, 3), RED),
    ]
    skipped = [("13", "invalid base64 image"), ("14", "unreadable image: UnidentifiedImageError"),
               ("15", "fewer than 2 non-empty options"), ("16", "empty option before a later option: B"),
               ("17", "gold answer not among the options: 'D'"), ("18", "missing question"), ("19", "missing image")]
    return f"mmbench:{path}", expected, skipped


def write_pope(tmp_path: Path, image_dir: Path | None = None) -> Fixture:
    """A POPE file with three good questions and six bad lines; images live beside it unless `image_dir` is given."""
    folder = image_dir or tmp_path
    put(folder / "COCO_val2014_000000000042.jpg", encode((6, 4), BLUE, "JPEG"))
    put(folder / "sub" / "b.png", encode((3, 3), GREY, mode="L"))
    put(folder / "corrupt.jpg", b"not an image at all")
    path = tmp_path / "pope_random.jsonl"
    coco = "COCO_val2014_000000000042.jpg"
    write_lines(path, [
        {"question_id": 1, "image": coco, "text": "Is there a dog in the image?", "label": "yes"},
        {"question_id": 2, "image": "sub/b.png", "text": "Is there a cat in the image?", "label": "NO"},
        {"question_id": 3, "image": "missing.jpg", "text": "Is there a car?", "label": "yes"},
        {"question_id": 4, "image": "corrupt.jpg", "text": "Is there a car?", "label": "yes"},
        "{not json",
        "",
        {"question_id": 7, "image": coco, "text": "Is there a car?", "label": "maybe"},
        {"question_id": 8, "image": coco, "text": "  ", "label": "no"},
        {"question_id": 9, "image": coco, "text": "Is there a bus in the image?"},
        "[1, 2]",
    ])
    expected = [
        ("1", "Is there a dog in the image?", ["yes", "no"], "A", None, (6, 4), BLUE),
        ("2", "Is there a cat in the image?", ["yes", "no"], "B", None, (3, 3), GREY),
        ("9", "Is there a bus in the image?", ["yes", "no"], None, None, (6, 4), BLUE),
    ]
    skipped = [("3", "image file not found: missing.jpg"), ("4", "unreadable image: UnidentifiedImageError"),
               ("5", "invalid JSON: Expecting property name enclosed in double quotes"),
               ("7", "label is not yes or no: 'maybe'"), ("8", "missing question"), ("10", "not a JSON object")]
    return f"pope:{path}", expected, skipped


def pmc_row(figure: str, question: str = "Q?", answer: str = "", choices: tuple[str, ...] = (" A:a", " B:b", "", ""),
            label: str = "") -> dict[str, str]:
    """One PMC-VQA CSV row."""
    return {"Figure_path": figure, "Question": question, "Answer": answer,
            **{f"Choice {letter}": choice for letter, choice in zip("ABCD", choices)}, "Answer_label": label}


def write_pmc_vqa(tmp_path: Path, image_dir: Path | None = None) -> Fixture:
    """A PMC-VQA CSV with three good rows (gold by label, by answer text, by prefixed text) and six bad ones."""
    folder = image_dir or tmp_path
    put(folder / "PMC1_F1.png", encode((8, 6), RED))
    put(folder / "PMC2_F1.jpg", encode((7, 7), GREEN, "JPEG"))
    put(folder / "broken.png", b"\x89PNG\r\n\x1a\n garbage")
    modalities = (" A:CT", " B:MRI", " C:X-ray", " D:Ultrasound")
    organs = ("A: Heart", "B: Lung", "C: Liver", "D: Kidney")
    rows = [
        pmc_row("PMC1_F1.png", "Which modality was used?", "MRI", modalities, "B"),
        pmc_row("PMC2_F1.jpg", "Which side is affected?", "Right", ("A: Left", "B: Right", "", "")),
        pmc_row("PMC3_F1.png", "Which modality?", "CT", modalities, "A"),
        pmc_row("PMC1_F1.png", "Which modality?", "CT", modalities, "E"),
        pmc_row("PMC1_F1.png", "", "CT", modalities, "A"),
        pmc_row("PMC1_F1.png", "Which organ?", "Spleen", organs),
        pmc_row("broken.png", "Which organ?", "Liver", organs, "C"),
        pmc_row("PMC1_F1.png", "Which organ?", choices=(" A:Only", "", "", "")),
        pmc_row("PMC1_F1.png", "Which organ is shown?", " C:Liver", organs),
    ]
    path = tmp_path / "test_clean.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    expected = [
        ("0", "Which modality was used?", ["CT", "MRI", "X-ray", "Ultrasound"], "B", None, (8, 6), RED),
        ("1", "Which side is affected?", ["Left", "Right"], "B", None, (7, 7), GREEN),
        ("8", "Which organ is shown?", ["Heart", "Lung", "Liver", "Kidney"], "C", None, (8, 6), RED),
    ]
    skipped = [("2", "image file not found: PMC3_F1.png"), ("3", "gold answer not among the options: 'E'"),
               ("4", "missing question"), ("5", "gold answer not among the options: 'Spleen'"),
               ("6", "unreadable image: OSError"), ("7", "fewer than 2 non-empty options")]
    return f"pmc-vqa:{path}", expected, skipped


def write_jsonl(tmp_path: Path, image_dir: Path | None = None) -> Fixture:
    """A generic JSONL file with three good records and eight bad lines."""
    folder = image_dir or tmp_path
    put(folder / "img" / "one.png", encode((4, 4), RED))
    put(folder / "img" / "two.jpg", encode((5, 3), GREY, "JPEG", "L"))
    put(folder / "img" / "trunc.jpg", truncated_jpeg())
    base = {"image": "img/one.png", "question": "Pick one.", "options": ["a", "b"]}
    path = tmp_path / "custom.jsonl"
    write_lines(path, [
        {"id": "q1", "image": "img/one.png", "question": "Which animal barks?", "options": ["cat", "dog", "bird"],
         "answer": "B", "hint": "It is a pet."},
        {"image": "img/two.jpg", "question": "Is it grey?", "options": ["Yes", "No"], "answer": "yes"},
        {**base, "id": 7, "options": ["x", "y", "", None]},
        {**base, "id": "few", "options": ["only"]},
        "not json at all",
        {"id": "no-image", "question": "Pick one.", "options": ["a", "b"]},
        {**base, "id": "truncated", "image": "img/trunc.jpg"},
        {**base, "id": "bad-gold", "answer": "Z"},
        {**base, "id": "string-options", "options": "a,b"},
        {**base, "id": "gap", "options": ["a", "", "c"]},
        {**base, "id": "nested", "question": {"text": "Pick one."}},
    ])
    expected = [
        ("q1", "Which animal barks?", ["cat", "dog", "bird"], "B", "It is a pet.", (4, 4), RED),
        ("2", "Is it grey?", ["Yes", "No"], "A", None, (5, 3), GREY),
        ("7", "Pick one.", ["x", "y"], None, None, (4, 4), RED),
    ]
    skipped = [("few", "fewer than 2 non-empty options"), ("5", "invalid JSON: Expecting value"),
               ("no-image", "missing image"), ("truncated", "unreadable image: OSError"),
               ("bad-gold", "gold answer not among the options: 'Z'"), ("string-options", "options is not a list"),
               ("gap", "empty option before a later option: B"), ("nested", "question is not text")]
    return f"jsonl:{path}", expected, skipped


def conversation(prompt: str, reply: str | None = None) -> list[dict[str, str]]:
    """A LLaVA-style conversation: the human prompt and, when given, the assistant's reply."""
    turns = [{"from": "human", "value": prompt}]
    return turns + ([{"from": "gpt", "value": reply}] if reply is not None else [])


def write_paper(tmp_path: Path, layout: str = "list") -> Fixture:
    """The paper's JSON with three good records (path, data-URL and bare base64 images) and six bad ones."""
    put(tmp_path / "imgs" / "p1.png", encode((6, 5), GREEN))
    four = f"<image>\nWhat is in the picture?\nA. cat\nB. dog\nC. bird\nD. fish\n{INSTRUCTION}"
    records: list[Any] = [
        {"id": "p1", "image": "imgs/p1.png", "num_options": 4, "conversations": conversation(four, "B")},
        {"id": "p2", "image": "data:image/png;base64," + b64(encode((3, 2), RED)), "num_options": 3,
         "conversations": conversation(f"<image>\nContext: a farm.\nWhich animal moos?\nA) cow\nB) hen\nC) pig\n"
                                       f"{INSTRUCTION}", "A. cow")},
        {"id": 3, "image": b64(encode((2, 2), BLUE)),
         "conversations": conversation("Is it blue?\n<image>\nA: yes\nB: no")},
        {"id": "p4", "image": "data:image/png;base64,@@@@", "num_options": 4, "conversations": conversation(four, "A")},
        {"id": "p5", "image": "imgs/p1.png", "num_options": 4,
         "conversations": conversation("<image>\nWhich?\nA. x\nB. y\nC. z\nAnswer.", "A")},
        {"id": "p6", "image": "imgs/p1.png", "num_options": 4, "conversations": conversation(four, "E")},
        "just a string",
        {"id": "p8", "image": "imgs/nope.png", "num_options": 4, "conversations": conversation(four, "C")},
        {"id": "p9", "image": "imgs/p1.png", "num_options": 4},
    ]
    stored: Any = records if layout == "list" else {"model": "demo", layout: records}
    path = tmp_path / "stage2.json"
    path.write_text(json.dumps(stored))
    expected = [
        ("p1", "What is in the picture?", ["cat", "dog", "bird", "fish"], "B", None, (6, 5), GREEN),
        ("p2", "Context: a farm.\nWhich animal moos?", ["cow", "hen", "pig"], "A", None, (3, 2), RED),
        ("3", "Is it blue?", ["yes", "no"], None, None, (2, 2), BLUE),
    ]
    skipped = [("p4", "invalid base64 image"), ("p5", "expected 4 options, found 3"),
               ("p6", "gold answer not among the options: 'E'"), ("6", "not a JSON object"),
               ("p8", "image file not found: imgs/nope.png"), ("p9", "missing conversations")]
    return f"paper:{path}", expected, skipped


WRITERS: dict[str, Callable[[Path], Fixture]] = {
    "mmbench": write_mmbench,
    "pope": write_pope,
    "pmc-vqa": write_pmc_vqa,
    "jsonl": write_jsonl,
    "paper-list": write_paper,
    "paper-data": partial(write_paper, layout="data"),
    "paper-samples": partial(write_paper, layout="samples"),
}


def close_colour(actual: tuple[int, ...], wanted: tuple[int, int, int]) -> bool:
    """Whether a decoded pixel matches the drawn colour within JPEG's error."""
    return max(abs(a - w) for a, w in zip(actual, wanted)) <= 8


def check_samples(samples: list[Sample], expected: list[Expected]) -> None:
    """Assert ids, texts, options, gold letters, hints and the decoded images of the samples."""
    assert [(s.id, s.question, s.options, s.answer, s.hint) for s in samples] == [e[:5] for e in expected]
    for sample, (*_, size, colour) in zip(samples, expected):
        assert sample.letters == [chr(ord("A") + i) for i in range(len(sample.options))]
        assert sample.image.mode == "RGB" and sample.image.size == size
        assert close_colour(sample.image.getpixel((0, 0)), colour)


@pytest.mark.parametrize("writer", WRITERS.values(), ids=WRITERS.keys())
def test_loads_good_rows_and_skips_bad_ones_with_reasons(tmp_path: Path, writer: Callable[[Path], Fixture],
                                                         caplog: pytest.LogCaptureFixture) -> None:
    """Every format keeps its good rows intact and records, and logs, each bad row with its exact reason."""
    spec, expected, skipped = writer(tmp_path)
    with caplog.at_level(logging.WARNING, logger="pidcore.datasets"):
        dataset = load_dataset(spec)
    assert isinstance(dataset, LoadedDataset)
    assert dataset.name == Path(spec.split(":", 1)[1]).stem
    check_samples(dataset.samples, expected)
    assert dataset.skipped == skipped
    warnings = [record for record in caplog.records if record.name == "pidcore.datasets"]
    assert len(warnings) == len(skipped)
    assert all(reason in record.getMessage() for record, (_, reason) in zip(warnings, skipped))


@pytest.mark.parametrize("writer", WRITERS.values(), ids=WRITERS.keys())
def test_limit_stops_after_that_many_usable_samples(tmp_path: Path, writer: Callable[[Path], Fixture]) -> None:
    """`limit` returns the first usable samples only, without reading the bad rows after them."""
    spec, expected, _ = writer(tmp_path)
    dataset = load_dataset(spec, limit=2)
    check_samples(dataset.samples, expected[:2])
    assert dataset.skipped == []


def test_limit_keeps_the_rows_skipped_before_it(tmp_path: Path) -> None:
    """Rows skipped before the limit is reached are still reported; those after it are never read."""
    spec, expected, skipped = write_pope(tmp_path)
    dataset = load_dataset(spec, limit=3)
    check_samples(dataset.samples, expected)
    assert dataset.skipped == skipped[:-1]


@pytest.mark.parametrize("limit", [0, -1])
def test_limit_below_one_is_refused(tmp_path: Path, limit: int) -> None:
    """A limit that could return nothing is a caller error, not an empty dataset."""
    spec, _, _ = write_jsonl(tmp_path)
    with pytest.raises(DatasetError, match="limit must be at least 1"):
        load_dataset(spec, limit=limit)


@pytest.mark.parametrize("writer", [write_pope, write_pmc_vqa, write_jsonl], ids=["pope", "pmc-vqa", "jsonl"])
def test_image_root_overrides_the_file_folder(tmp_path: Path, writer: Callable[..., Fixture]) -> None:
    """Images resolve against `image_root` when given, and against the file's folder otherwise."""
    images = tmp_path / "elsewhere"
    spec, expected, skipped = writer(tmp_path, image_dir=images)
    check_samples(load_dataset(spec, image_root=images).samples, expected)
    with pytest.raises(DatasetError, match="no usable row"):
        load_dataset(spec)


def test_image_root_must_be_a_folder(tmp_path: Path) -> None:
    """A wrong image root fails up front instead of skipping every row."""
    spec, _, _ = write_jsonl(tmp_path)
    with pytest.raises(DatasetError, match="image root is not a folder"):
        load_dataset(spec, image_root=tmp_path / "absent")


def write_bad_mmbench(tmp_path: Path) -> str:
    """An MMBench TSV whose rows all lack a question or carry bad base64."""
    path = tmp_path / "bad.tsv"
    rows = [mmbench_row(1, question="", image="x"), mmbench_row(2, question="", image="x"), mmbench_row(3, image="#")]
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return f"mmbench:{path}"


def write_bad_pope(tmp_path: Path) -> str:
    """A POPE file whose images are all missing, plus one broken line."""
    path = tmp_path / "bad.jsonl"
    write_lines(path, [{"question_id": i, "image": f"{i}.jpg", "text": "Is there a dog?", "label": "no"}
                       for i in (1, 2, 3)] + ["{"])
    return f"pope:{path}"


def write_bad_pmc_vqa(tmp_path: Path) -> str:
    """A PMC-VQA CSV whose rows all have a single choice."""
    path = tmp_path / "bad.csv"
    pd.DataFrame([pmc_row("f.png", choices=(" A:only", "", "", ""))] * 2).to_csv(path, index=False)
    return f"pmc-vqa:{path}"


def write_bad_jsonl(tmp_path: Path) -> str:
    """A JSONL file of broken lines and a record without options."""
    path = tmp_path / "bad.jsonl"
    write_lines(path, ["{oops", "nope", {"image": "a.png", "question": "Q?"}])
    return f"jsonl:{path}"


def write_bad_paper(tmp_path: Path) -> str:
    """A paper JSON whose records are not objects or have no conversation."""
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"data": ["text", 3, {"id": "x", "image": "a.png"}]}))
    return f"paper:{path}"


@pytest.mark.parametrize(("writer", "why"), [
    (write_bad_mmbench, "3 rows skipped: missing question (2), invalid base64 image (1)"),
    (write_bad_pope, "4 rows skipped: image file not found (3), invalid JSON (1)"),
    (write_bad_pmc_vqa, "2 rows skipped: fewer than 2 non-empty options (2)"),
    (write_bad_jsonl, "3 rows skipped: invalid JSON (2), missing options (1)"),
    (write_bad_paper, "3 rows skipped: not a JSON object (2), missing conversations (1)"),
], ids=["mmbench", "pope", "pmc-vqa", "jsonl", "paper"])
def test_a_file_without_usable_rows_says_why(tmp_path: Path, writer: Callable[[Path], str], why: str) -> None:
    """A file whose rows are all bad fails with the count of each skip reason."""
    with pytest.raises(DatasetError, match="no usable row") as error:
        load_dataset(writer(tmp_path))
    assert str(error.value).endswith(why)


@pytest.mark.parametrize(("kind", "content"), [("pope", ""), ("jsonl", "\n\n"), ("paper", "[]"),
                                                ("paper", '{"samples": []}')])
def test_a_file_without_rows_says_so(tmp_path: Path, kind: str, content: str) -> None:
    """An empty file fails and says it has no rows."""
    path = tmp_path / "empty.txt"
    path.write_text(content)
    with pytest.raises(DatasetError, match="no usable row in empty.txt: the file has no rows"):
        load_dataset(f"{kind}:{path}")


@pytest.mark.parametrize(("kind", "content", "why"), [
    ("mmbench", "", "cannot read empty.txt as a table"),
    ("mmbench", "index\tquestion\tA\tB\n1\tQ?\ta\tb\n", "lacks column(s): image"),
    ("pmc-vqa", "Question,Choice A,Choice B\nQ?,a,b\n", "lacks column(s): Figure_path"),
    ("paper", "[{", "empty.txt is not valid JSON"),
    ("paper", '{"rows": []}', "holds no list of records"),
])
def test_a_malformed_file_is_refused(tmp_path: Path, kind: str, content: str, why: str) -> None:
    """A file that is not a table or list of records, or lacks a required column, fails as a whole."""
    path = tmp_path / "empty.txt"
    path.write_text(content)
    with pytest.raises(DatasetError, match=re.escape(why)):
        load_dataset(f"{kind}:{path}")


@pytest.mark.parametrize(("spec", "why"), [
    ("csv:data.csv", "unknown dataset kind 'csv'"),
    ("data.jsonl", "is not KIND:PATH"),
    ("jsonl:", "is not KIND:PATH"),
])
def test_a_bad_spec_is_refused(spec: str, why: str) -> None:
    """An unknown kind or a spec that is not KIND:PATH fails before any file is read."""
    with pytest.raises(DatasetError, match=why):
        load_dataset(spec)


@pytest.mark.parametrize("kind", ["mmbench", "pope", "pmc-vqa", "jsonl", "paper"])
def test_a_missing_file_is_refused(tmp_path: Path, kind: str) -> None:
    """A missing dataset file fails with the kind and the path."""
    with pytest.raises(DatasetError, match=f"{kind} dataset file not found"):
        load_dataset(f"{kind}:{tmp_path / 'absent.file'}")


def test_dataset_error_is_a_value_error() -> None:
    """Callers catching ValueError also catch dataset errors."""
    assert issubclass(DatasetError, ValueError)


def write_sized_jsonl(tmp_path: Path) -> str:
    """A JSONL file of a 4x3 image and a 4x4 image."""
    put(tmp_path / "small.png", encode((4, 3), RED))
    put(tmp_path / "big.png", encode((4, 4), RED))
    path = tmp_path / "sized.jsonl"
    write_lines(path, [{"id": name, "image": f"{name}.png", "question": "Q?", "options": ["a", "b"]}
                       for name in ("small", "big")])
    return f"jsonl:{path}"


def write_sized_mmbench(tmp_path: Path) -> str:
    """An MMBench TSV of a 4x3 image and a 4x4 image."""
    path = tmp_path / "sized.tsv"
    rows = [mmbench_row(index, image=b64(encode(size, RED))) for index, size in (("small", (4, 3)), ("big", (4, 4)))]
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return f"mmbench:{path}"


@pytest.mark.parametrize("writer", [write_sized_jsonl, write_sized_mmbench], ids=["jsonl", "mmbench"])
def test_an_image_over_the_pixel_bound_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  writer: Callable[[Path], str]) -> None:
    """An image above MAX_PIXELS is skipped with its size, from a file or from base64."""
    monkeypatch.setattr(image_module, "MAX_PIXELS", 12)
    dataset = load_dataset(writer(tmp_path))
    assert [sample.id for sample in dataset.samples] == ["small"]
    assert dataset.skipped == [("big", "image too large: 4x4 exceeds 12 pixels")]


def test_a_decompression_bomb_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow's own decompression-bomb refusal becomes a skipped row, not a crash."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 7)
    dataset = load_dataset(write_sized_jsonl(tmp_path))
    assert [sample.id for sample in dataset.samples] == ["small"]
    assert [row_id for row_id, _ in dataset.skipped] == ["big"]
    assert dataset.skipped[0][1].startswith("image too large: Image size (16 pixels) exceeds limit")


def test_the_default_pixel_bound_is_50_megapixels() -> None:
    """The shipped bound is 50 megapixels."""
    assert image_module.MAX_PIXELS == 50_000_000
