"""The paper's split layout as a dataset: `paper:DIR` and `paper:PREFIX` read train.json then val.json as the paper's
scripts do (`PREFIX + data_mode + ".json"`), with splits, verbatim prompts, ids, per-split limits, images as the
paper reads them, and fingerprints that move only where split or prompt add something."""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from PIL import Image

from pidcore.cli import main
from pidcore.datasets import DatasetError, LoadedDataset, Sample, load_dataset
from pidcore.datasets.fingerprint import dataset_fingerprint
from pidcore.models.tiny import build_tiny_model
from pidcore.pipeline import attach as attach_module
from pidcore.store import read_runs, read_sample_table
from tests.test_datasets import b64, conversation, encode, mmbench_row, put, write_jsonl, write_paper
from tests.test_sample_texts import old_copy

INSTRUCTION = "Answer with the option's letter from the given choices directly."
HALF_RED = (200, 0, 0, 128)


def human(question: str, options: tuple[str, ...] = ("cat", "dog"), tail: str = f"\n{INSTRUCTION}") -> str:
    """The paper's human turn: question, lettered options, an optional instruction, then the image tag."""
    lines = [question, *(f"{letter}. {option}" for letter, option in zip("ABCD", options))]
    return "\n".join(lines) + tail + "\n<image>"


def record(image: str, question: str = "What is it?", answer: str = "A", id: Any = None,  # noqa: A002
           prompt: str | None = None) -> dict[str, Any]:
    """One paper record with two options (the human turn `prompt`, else built from `question`); no id when None."""
    fields = {"image": image, "num_options": 2, "conversations": conversation(prompt or human(question), answer)}
    return fields if id is None else {"id": id, **fields}


def write_split(folder: Path, name: str, records: list[Any]) -> Path:
    """Write one split file of records."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(json.dumps(records))
    return path


def rgba_png(size: tuple[int, int] = (2, 2), colour: tuple[int, int, int, int] = HALF_RED) -> bytes:
    """A solid RGBA PNG."""
    buffer = io.BytesIO()
    Image.new("RGBA", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    """A folder with imgs/a.png, train.json (explicit id, positional id) and val.json (two explicit ids)."""
    put(tmp_path / "imgs" / "a.png", encode((3, 2), (10, 20, 30)))
    write_split(tmp_path, "train.json", [record("imgs/a.png", "T0?", id="t0"), record("imgs/a.png", "T1?")])
    write_split(tmp_path, "val.json", [record("imgs/a.png", "V0?", id=7, answer="B"),
                                       record("imgs/a.png", "V1?", id="v1")])
    return tmp_path


def summary(dataset: LoadedDataset) -> list[tuple[str, str | None, str]]:
    """Each sample's id, split and question."""
    return [(sample.id, sample.split, sample.question) for sample in dataset.samples]


EXPECTED = [("t0", "fit", "T0?"), ("train-1", "fit", "T1?"), ("7", "evaluation", "V0?"),
            ("v1", "evaluation", "V1?")]


def test_a_folder_is_the_train_and_val_layout(layout: Path) -> None:
    """paper:DIR reads DIR/train.json then DIR/val.json, each in file order, with the store's split names."""
    dataset = load_dataset(f"paper:{layout}")
    assert summary(dataset) == EXPECTED
    assert dataset.skipped == []
    assert [sample.answer for sample in dataset.samples] == ["A", "A", "B", "A"]
    assert dataset.name == layout.name


def test_a_prefix_is_the_paper_read_dir(tmp_path: Path) -> None:
    """paper:PREFIX reads PREFIX + "train.json" and PREFIX + "val.json", as `--read_dir PREFIX --data_mode`; images
    resolve beside those files."""
    put(tmp_path / "data" / "imgs" / "a.png", encode((3, 2), (10, 20, 30)))
    write_split(tmp_path / "data", "mmbench_en_train.json", [record("imgs/a.png", "T0?", id="t0")])
    write_split(tmp_path / "data", "mmbench_en_val.json", [record("imgs/a.png", "V0?")])
    dataset = load_dataset(f"paper:{tmp_path / 'data' / 'mmbench_en_'}")
    assert summary(dataset) == [("t0", "fit", "T0?"), ("val-0", "evaluation", "V0?")]
    assert dataset.name == "mmbench_en"


def test_a_single_file_loads_as_before(tmp_path: Path) -> None:
    """A spec naming a file is one file, even beside split files: no split, positional ids without a prefix, the
    same samples and skipped rows as ever; every record now carries its prompt."""
    spec, expected, skipped = write_paper(tmp_path)
    write_split(tmp_path, "train.json", [])
    dataset = load_dataset(spec)
    assert [(s.id, s.question, s.options, s.answer) for s in dataset.samples] == [e[:4] for e in expected]
    assert dataset.skipped == skipped
    assert {sample.split for sample in dataset.samples} == {None}
    four = f"<image>\nWhat is in the picture?\nA. cat\nB. dog\nC. bird\nD. fish\n{INSTRUCTION}"
    assert dataset.samples[0].prompt == four
    assert dataset.samples[2].prompt == "Is it blue?\nA: yes\nB: no"


def test_the_prompt_is_the_human_text_as_the_paper_passes_it(tmp_path: Path) -> None:
    """The prompt is `value.replace('\\n<image>', '')` and nothing else: whitespace, instruction, a leading tag kept."""
    put(tmp_path / "a.png", encode((2, 2), (1, 2, 3)))
    texts = ["  Q?\nA. x\nB. y\nAnswer.  \n<image>", "<image>\nQ?\nA) x\nB) y\n<image>\n<image>"]
    write_split(tmp_path, "train.json", [record("a.png", prompt=texts[0])])
    write_split(tmp_path, "val.json", [record("a.png", prompt=texts[1])])
    dataset = load_dataset(f"paper:{tmp_path}")
    assert [sample.prompt for sample in dataset.samples] == ["  Q?\nA. x\nB. y\nAnswer.  ", "<image>\nQ?\nA) x\nB) y"]
    assert [sample.question for sample in dataset.samples] == ["Q?", "Q?"]


def test_other_kinds_have_no_split_or_prompt(tmp_path: Path) -> None:
    """The new fields default to None for every other loader."""
    spec, _, _ = write_jsonl(tmp_path)
    dataset = load_dataset(spec)
    assert {(sample.split, sample.prompt) for sample in dataset.samples} == {(None, None)}


@pytest.mark.parametrize(("present", "missing"), [("train.json", "val.json"), ("val.json", "train.json")])
def test_a_folder_missing_a_split_is_refused(tmp_path: Path, present: str, missing: str) -> None:
    """A folder without one of the two files is refused naming the missing one."""
    write_split(tmp_path, present, [record("a.png")])
    with pytest.raises(DatasetError, match=f"lacks {tmp_path / missing}:"):
        load_dataset(f"paper:{tmp_path}")


def test_a_prefix_missing_a_split_is_refused(tmp_path: Path) -> None:
    """A prefix with only its train file is refused naming the val file."""
    write_split(tmp_path, "x_train.json", [record("a.png")])
    with pytest.raises(DatasetError, match=f"lacks {tmp_path / 'x_val.json'}:"):
        load_dataset(f"paper:{tmp_path / 'x_'}")


def test_a_path_that_is_nothing_names_what_it_tried(tmp_path: Path) -> None:
    """No file, folder or split files: the error names the path and both split files it looked for."""
    with pytest.raises(DatasetError, match="paper dataset file not found") as error:
        load_dataset(f"paper:{tmp_path / 'nope_'}")
    assert str(tmp_path / "nope_train.json") in str(error.value)
    assert str(tmp_path / "nope_val.json") in str(error.value)


def test_other_kinds_do_not_read_the_layout(layout: Path) -> None:
    """A folder is still refused for kinds without a split layout."""
    with pytest.raises(DatasetError, match="jsonl dataset is not a regular file"):
        load_dataset(f"jsonl:{layout}")


def test_an_id_in_both_splits_is_an_error_naming_it(layout: Path) -> None:
    """Ids must be unique across train and val; "first" keeps the train row and names the val row skipped."""
    write_split(layout, "val.json", [record("imgs/a.png", "V0?", id="t0"), record("imgs/a.png", "V1?", id="v1")])
    with pytest.raises(DatasetError, match=r"train.json and val.json: 1 sample id\(s\) appear more than once: 't0'"):
        load_dataset(f"paper:{layout}")
    dataset = load_dataset(f"paper:{layout}", dedupe="first")
    assert [sample.id for sample in dataset.samples] == ["t0", "train-1", "v1"]
    assert dataset.skipped == [("val.json: t0", "duplicate id: the first row with id 't0' is kept")]


def test_the_limit_applies_to_each_split(layout: Path) -> None:
    """limit=1 keeps the first usable record of train and the first of val."""
    write_split(layout, "train.json", ["not a record", record("imgs/a.png", "T1?"), record("imgs/a.png", "T2?")])
    dataset = load_dataset(f"paper:{layout}", limit=1)
    assert summary(dataset) == [("train-1", "fit", "T1?"), ("7", "evaluation", "V0?")]
    assert dataset.skipped == [("train.json: train-0", "not a JSON object")]


def test_a_bad_record_is_skipped_whole_and_named_by_its_file(layout: Path) -> None:
    """Bad records are skipped, counted and named per file; the rest of both splits loads."""
    write_split(layout, "val.json", [record("imgs/missing.png", id="v0"), record("imgs/a.png", "V1?", id="v1"),
                                     {"id": "v2", "image": "imgs/a.png"}])
    dataset = load_dataset(f"paper:{layout}")
    assert [sample.id for sample in dataset.samples] == ["t0", "train-1", "v1"]
    assert dataset.skipped == [("val.json: v0", "image file not found: imgs/missing.png"),
                               ("val.json: v2", "missing conversations")]


def test_a_split_without_a_usable_record_is_refused(layout: Path) -> None:
    """Each split has a role, so one that keeps nothing is an error naming its file and why."""
    write_split(layout, "val.json", [{"id": "v0"}, 3])
    with pytest.raises(DatasetError, match=r"no usable row in val.json: 2 rows skipped: missing conversations \(1\), "
                                           r"not a JSON object \(1\)"):
        load_dataset(f"paper:{layout}")


def test_image_root_resolves_path_images(tmp_path: Path) -> None:
    """Path images resolve under image_root (the paper's --image_dir) instead of beside the JSON."""
    put(tmp_path / "pictures" / "a.png", encode((5, 4), (9, 9, 9)))
    write_split(tmp_path / "json", "train.json", [record("a.png")])
    write_split(tmp_path / "json", "val.json", [record("a.png")])
    with pytest.raises(DatasetError, match="no usable row in train.json: 1 row skipped: image file not found"):
        load_dataset(f"paper:{tmp_path / 'json'}")
    dataset = load_dataset(f"paper:{tmp_path / 'json'}", image_root=tmp_path / "pictures")
    assert [sample.image.size for sample in dataset.samples] == [(5, 4), (5, 4)]


def white_composite(colour: tuple[int, int, int, int]) -> tuple[int, int, int]:
    """What PIL's paste through an alpha mask gives over white, computed independently."""
    red, green, blue, alpha = colour
    return tuple(round((value * alpha + 255 * (255 - alpha)) / 255) for value in (red, green, blue))


@pytest.mark.parametrize("split_layout", [True, False], ids=["layout", "single-file"])
def test_rgba_base64_keeps_an_image_on_white_and_a_path_drops_alpha(tmp_path: Path, split_layout: bool) -> None:
    """Every image reads as before, alpha dropped; a base64 RGBA image also keeps the image the paper's Qwen scripts
    see, qwen_vl_utils' to_rgb on white, where a path image (Image.open(path).convert("RGB")) has none."""
    put(tmp_path / "a.png", rgba_png())
    records = [record(b64(rgba_png()), id="inline"), record("data:image/png;base64," + b64(rgba_png()), id="url"),
               record("a.png", id="path")]
    if split_layout:
        write_split(tmp_path, "train.json", records)
        write_split(tmp_path, "val.json", [record("a.png", id="v")])
        spec = f"paper:{tmp_path}"
    else:
        spec = f"paper:{write_split(tmp_path, 'one.json', records)}"
    samples = {sample.id: sample for sample in load_dataset(spec).samples}
    assert {sample.image.getpixel((0, 0)) for sample in samples.values()} == {(200, 0, 0)}
    assert all(sample.image.mode == "RGB" for sample in samples.values())
    on_white = white_composite(HALF_RED)
    assert abs(on_white[0] - 227) <= 1 and on_white[1:] == (127, 127)
    assert max(abs(a - b) for a, b in zip(samples["inline"].on_white.getpixel((0, 0)), on_white)) <= 1
    assert samples["url"].on_white.getpixel((0, 0)) == samples["inline"].on_white.getpixel((0, 0))
    assert samples["path"].on_white is None


def test_other_kinds_still_drop_alpha_of_base64(tmp_path: Path) -> None:
    """The MMBench kind reads a base64 RGBA image as before: alpha dropped."""
    path = tmp_path / "a.tsv"
    pd.DataFrame([mmbench_row(1, image=b64(rgba_png()))]).to_csv(path, sep="\t", index=False)
    assert load_dataset(f"mmbench:{path}").samples[0].image.getpixel((0, 0)) == (200, 0, 0)


def test_non_rgba_base64_is_converted_as_before(tmp_path: Path) -> None:
    """to_rgb converts every mode but RGBA with convert("RGB"): a greyscale+alpha (LA) image keeps its grey."""
    buffer = io.BytesIO()
    Image.new("LA", (2, 2), (90, 10)).save(buffer, "PNG")
    write_split(tmp_path, "train.json", [record(b64(buffer.getvalue()))])
    write_split(tmp_path, "val.json", [record(b64(buffer.getvalue()))])
    assert load_dataset(f"paper:{tmp_path}").samples[0].image.getpixel((0, 0)) == (90, 90, 90)


def legacy_fingerprint(dataset: LoadedDataset) -> str:
    """The digest as it was computed before samples had split and prompt (a copy of the old function)."""
    digest = hashlib.blake2b(digest_size=16)
    for sample in dataset.samples:
        texts = [sample.id, sample.question, sample.options, sample.answer, sample.hint, sample.image.size]
        digest.update(json.dumps(texts).encode())
        digest.update(sample.image.tobytes())
    return digest.hexdigest()


def test_fingerprints_of_other_kinds_do_not_move(tmp_path: Path) -> None:
    """A dataset without split or prompt has the digest it always had; so does a shapes task."""
    for dataset in (load_dataset(write_jsonl(tmp_path)[0]), load_dataset("shapes:synergy", limit=4)):
        assert dataset_fingerprint(dataset) == legacy_fingerprint(dataset)
        assert dataset_fingerprint(dataset, split=False, paper_inputs=False) == legacy_fingerprint(dataset)


def sample(prompt: str | None = None, split: str | None = None) -> LoadedDataset:
    """A one-sample dataset with the given prompt and split."""
    image = Image.new("RGB", (2, 2), (1, 2, 3))
    return LoadedDataset("x", [Sample("a", image, "Q?", ["x", "y"], "A", None, split=split, prompt=prompt)])


def test_the_fingerprint_keys_split_and_prompt() -> None:
    """Split and an informative prompt change the digest; a prompt that is just the question and options does not,
    and without split and the paper's inputs it is always the old digest."""
    plain = sample()
    assert dataset_fingerprint(sample(prompt="Q?\nA. x\nB. y")) == dataset_fingerprint(plain)
    digests = {dataset_fingerprint(case) for case in (plain, sample(prompt="Q?\nA. x\nB. y\nAnswer."),
                                                      sample(prompt="Q?\nA. x\nB. y\nAnswer!"),
                                                      sample(split="fit"), sample(split="evaluation"))}
    assert len(digests) == 5
    other = sample(prompt="other", split="fit")
    assert dataset_fingerprint(other, split=False, paper_inputs=False) == dataset_fingerprint(plain)
    assert dataset_fingerprint(other, paper_inputs=False) == dataset_fingerprint(sample(split="fit"))


def test_a_paper_file_moves_only_when_its_prompt_says_more(tmp_path: Path) -> None:
    """A paper file whose human text is question and options alone keeps its old digest; with an instruction it
    moves for a run that reads the paper's inputs (an edited instruction is another dataset), never for one that
    does not (a clean run keeps the id it had before prompts were read)."""
    put(tmp_path / "a.png", encode((2, 2), (1, 2, 3)))
    plain = write_split(tmp_path, "plain.json", [record("a.png", id="a", prompt=human("Q?", tail=""))])
    dataset = load_dataset(f"paper:{plain}")
    assert dataset_fingerprint(dataset) == legacy_fingerprint(dataset)
    digests = set()
    for text in (INSTRUCTION, "Answer with a letter."):
        path = write_split(tmp_path, "told.json", [record("a.png", id="a", prompt=human("Q?", tail=f"\n{text}"))])
        told = load_dataset(f"paper:{path}")
        assert legacy_fingerprint(told) == legacy_fingerprint(dataset)
        assert dataset_fingerprint(told, paper_inputs=False) == legacy_fingerprint(dataset)
        digests.add(dataset_fingerprint(told))
    assert len(digests) == 2 and dataset_fingerprint(dataset) not in digests


def test_the_layout_fingerprint_differs_from_its_files_concatenated(tmp_path: Path) -> None:
    """The same records as one file or as train/val splits are different datasets (the split is keyed)."""
    put(tmp_path / "a.png", encode((2, 2), (1, 2, 3)))
    records = [record("a.png", id=name, prompt=human(text, tail="")) for name, text in (("a", "Q?"), ("b", "R?"))]
    write_split(tmp_path / "split", "train.json", records[:1])
    write_split(tmp_path / "split", "val.json", records[1:])
    single = load_dataset(f"paper:{write_split(tmp_path, 'all.json', records)}")
    split = load_dataset(f"paper:{tmp_path / 'split'}", image_root=tmp_path)
    assert dataset_fingerprint(single) != dataset_fingerprint(split)
    assert dataset_fingerprint(single, split=False) == dataset_fingerprint(split, split=False)


def test_attach_reloads_the_split_layout(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A run profiled on paper:DIR, stored as before samples kept their texts, gets every sample's texts back from
    the same layout (ids from both splits, fingerprint recorded by profile)."""
    model = build_tiny_model("llava", tmp_path / "tiny-llava")
    data = tmp_path / "data"
    for split, count in (("train", 3), ("val", 2)):
        for i in range(count):
            put(data / f"{split}{i}.png", encode((36, 36), ((255, 0, 0), (0, 0, 255), (0, 200, 0))[i]))
        write_split(data, f"{split}.json", [record(f"{split}{i}.png", f"Colour {i}?") for i in range(count)])
    db = tmp_path / "results.duckdb"
    assert main(["profile", "--model", str(model), "--dataset", f"paper:{data}", "--db", str(db), "--device", "cpu",
                 "--layers", "last", "--bootstrap", "0"]) == 0
    run_id = read_runs(db)["run_id"].iloc[0]
    old = old_copy(db, tmp_path / "old.duckdb")
    assert main(["samples", "attach", "--db", str(old)]) == 0
    assert "attached 5, skipped 0" in capsys.readouterr().out
    table = read_sample_table(old, run_id).set_index("sample_id")
    assert table["question"].to_dict() == {"train-0": "Colour 0?", "train-1": "Colour 1?", "train-2": "Colour 2?",
                                           "val-0": "Colour 0?", "val-1": "Colour 1?"}


def test_attach_accepts_a_paper_run_recorded_before_prompts(tmp_path: Path) -> None:
    """A paper-file run whose recorded fingerprint predates prompts (the digest without them) still reloads; one
    that matches neither digest is refused as changed."""
    put(tmp_path / "a.png", encode((2, 2), (1, 2, 3)))
    spec = f"paper:{write_split(tmp_path, 'told.json', [record('a.png', id='a')])}"
    dataset = load_dataset(spec)
    assert dataset_fingerprint(dataset) != legacy_fingerprint(dataset)
    for recorded, probes in ((legacy_fingerprint(dataset), "clean"), (dataset_fingerprint(dataset), "published")):
        settings = {"dataset": spec, "dataset_identity": recorded, "probes": probes}
        assert attach_module._dataset_of(settings, None).samples
    with pytest.raises(ValueError, match="its content has changed"):
        attach_module._dataset_of({"dataset": spec, "dataset_identity": "0" * 32}, None)


def test_attach_reads_images_from_the_runs_image_dir(tmp_path: Path) -> None:
    """Without --image-root, attach resolves path images under the image folder the run recorded."""
    put(tmp_path / "pictures" / "a.png", encode((5, 4), (9, 9, 9)))
    write_split(tmp_path / "json", "train.json", [record("a.png")])
    write_split(tmp_path / "json", "val.json", [record("a.png")])
    settings = {"dataset": f"paper:{tmp_path / 'json'}", "image_dir": str(tmp_path / "pictures")}
    assert [sample.id for sample in attach_module._dataset_of(settings, None).samples] == ["train-0", "val-0"]
    with pytest.raises(DatasetError, match="image file not found"):
        attach_module._dataset_of(settings, tmp_path / "json")


def test_a_clean_run_of_a_paper_file_keeps_its_dataset_identity(tmp_path: Path) -> None:
    """Profiled clean, a paper file with an answer instruction and an RGBA base64 image resolves to the dataset
    identity it had before prompts and images on white were read; profiled published, to another one."""
    from pidcore.pipeline.profiling import resolved_identities
    from pidcore.pipeline.settings import ProfileSettings
    from pidcore.shipped import MODELS

    path = write_split(tmp_path, "told.json", [record(b64(rgba_png()), id="a"), record(b64(rgba_png()), id="b")])
    dataset = load_dataset(f"paper:{path}")
    settings = ProfileSettings(model=str(MODELS / "llava-s"), dataset=f"paper:{path}", db="x.duckdb", probes="clean")
    assert resolved_identities(settings, dataset).dataset_identity == legacy_fingerprint(dataset)
    published = resolved_identities(replace(settings, probes="published"), dataset)
    assert published.dataset_identity != legacy_fingerprint(dataset)
