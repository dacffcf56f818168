"""Hostile inputs: every dataset loader against files and image paths that are not what they claim (devices,
FIFOs, folders, oversized or broken data), `import-paper` against bad stage-2 files, a pickle-only model folder,
and a full disk. Each ends in a named skip reason or a one-line error, never a hang, a crash or a stray row."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pidcore.cli import main
from pidcore.models.identity import model_identity
from pidcore.models.loading import ModelLoadError, load_vlm
from pidcore.models.tiny import build_tiny_model
from pidcore.store import ensure_schema, load_samples, read_atoms, read_runs, table_sizes
from tests.stage2_files import conversation_records

ROOT = Path(__file__).resolve().parent.parent
IMAGE_LIMIT = 4096
# Runs load_dataset on each spec in a child process, as hostile files would take a test process down with them:
# an address-space cap turns a read of /dev/zero into a MemoryError and an alarm turns a FIFO's wait into an error.
LOADER_WORKER = """
import json, resource, signal, sys
from pidcore.datasets import images, load_dataset

def too_slow(*_):
    raise TimeoutError("still loading after 10 s")

with open("/proc/self/status") as status:
    used = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (used + (1 << 30), resource.RLIM_INFINITY))
signal.signal(signal.SIGALRM, too_slow)
images.MAX_IMAGE_BYTES = int(sys.argv[2])
results = {}
for name, spec in json.loads(sys.argv[1]).items():
    signal.alarm(10)
    try:
        dataset = load_dataset(spec)
        results[name] = {"samples": [sample.id for sample in dataset.samples], "skipped": dataset.skipped}
    except BaseException as error:
        results[name] = {"error": type(error).__name__, "message": str(error)}
    finally:
        signal.alarm(0)
print(json.dumps(results))
"""
# Writes under a file-size limit (a full disk, as the process sees it), SIGXFSZ ignored so a write fails with EFBIG.
FULL_DISK_WORKER = """
import resource, signal, sys
limit = int(sys.argv[1])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
exec(sys.argv[2])
"""


def png(size: int = 2, noise: bool = False) -> bytes:
    """A PNG of size x size pixels: solid, or random noise so it compresses badly (a large file)."""
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8) if noise else \
        np.full((size, size, 3), 200, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    """Base64 text of `data`."""
    return base64.b64encode(data).decode("ascii")


def jsonl(path: Path, records: list[dict]) -> Path:
    """A JSON Lines file of `records`."""
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def pope_file(folder: Path, bad: str) -> Path:
    """POPE: a good question on good.png, then question 2 on the image `bad`."""
    return jsonl(folder / "pope.jsonl", [{"question_id": number, "image": image, "text": "Is there a dog?",
                                          "label": "yes"} for number, image in ((1, "good.png"), (2, bad))])


def pmc_file(folder: Path, bad: str) -> Path:
    """PMC-VQA: a good row on good.png (row 0), then row 1 on the figure `bad`."""
    rows = [{"Figure_path": figure, "Question": "Which?", "Choice A": " A:CT", "Choice B": " B:MRI",
             "Answer_label": "A"} for figure in ("good.png", bad)]
    path = folder / "pmc.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def jsonl_file(folder: Path, bad: str) -> Path:
    """Generic JSONL: record "good" on good.png, then record "bad" on the image `bad`."""
    return jsonl(folder / "custom.jsonl", [{"id": name, "image": image, "question": "Which?", "options": ["a", "b"]}
                                           for name, image in (("good", "good.png"), ("bad", bad))])


def paper_file(folder: Path, bad: str) -> Path:
    """The paper's JSON: record "good" on good.png, then record "bad" on the image `bad` (a path or base64)."""
    prompt = [{"from": "human", "value": "<image>\nWhich?\nA. a\nB. b"}, {"from": "gpt", "value": "A"}]
    records = [{"id": name, "image": image, "num_options": 2, "conversations": prompt}
               for name, image in (("good", "good.png"), ("bad", bad))]
    path = folder / "paper.json"
    path.write_text(json.dumps(records))
    return path


def mmbench_file(folder: Path, bad: str) -> Path:
    """MMBench: row 1 with a good base64 image, then row 2 whose image cell is `bad`."""
    rows = [{"index": index, "question": "Which?", "A": "a", "B": "b", "image": image}
            for index, image in ((1, b64(png())), (2, bad))]
    path = folder / "mmbench.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


PATH_LOADERS: dict[str, Callable[[Path, str], Path]] = {"pope": pope_file, "pmc-vqa": pmc_file, "jsonl": jsonl_file,
                                                        "paper": paper_file}
BASE64_LOADERS: dict[str, Callable[[Path, str], Path]] = {"mmbench": mmbench_file, "paper": paper_file}
LOADERS = ("mmbench", "pope", "pmc-vqa", "jsonl", "paper")
BIG = png(64, noise=True)


def plant_images(folder: Path) -> None:
    """The image files the path cases name: a good one, a FIFO, a folder, a link to /dev/zero, a large PNG and a
    file that is no image."""
    (folder / "good.png").write_bytes(png())
    os.mkfifo(folder / "pipe.png")
    (folder / "folder.png").mkdir()
    (folder / "zero.png").symlink_to("/dev/zero")
    (folder / "big.png").write_bytes(BIG)
    (folder / "text.png").write_text("not an image")


# (case, image reference as the row gives it, the row's skip reason)
PATH_CASES = [
    ("missing", "absent.png", "image file not found: absent.png"),
    ("dev-zero", "/dev/zero", "image is not a regular file: /dev/zero is a character device"),
    ("link-to-dev-zero", "zero.png", "image is not a regular file: zero.png is a character device"),
    ("fifo", "pipe.png", "image is not a regular file: pipe.png is a FIFO"),
    ("folder", "folder.png", "image is not a regular file: folder.png is a folder"),
    ("oversized", "big.png", f"image too large: big.png has {len(BIG)} bytes, over the {IMAGE_LIMIT}-byte limit"),
    ("not-an-image", "text.png", "unreadable image: UnidentifiedImageError"),
]
BIG_BASE64 = b64(BIG)
BASE64_CASES = [
    ("bad-base64", "data:image/png;base64,@@@@", "invalid base64 image"),
    ("oversized-base64", "data:image/png;base64," + BIG_BASE64,
     f"image too large: base64 image has {len(BIG_BASE64) // 4 * 3} bytes, over the {IMAGE_LIMIT}-byte limit"),
    ("truncated-image", "data:image/png;base64," + b64(BIG[:200]), "unreadable image: OSError"),
]
NON_UTF8 = {"mmbench": b"index\tquestion\tA\tB\timage\n1\t\xff\xfe?\ta\tb\tx\n",
            "pmc-vqa": b"Figure_path,Question,Choice A,Choice B\nf.png,\xff\xfe?,a,b\n",
            "pope": b'{"question_id": 1, "image": "good.png", "text": "\xff\xfe?"}\n',
            "jsonl": b'{"id": "x", "image": "good.png", "question": "\xff\xfe?", "options": ["a", "b"]}\n',
            "paper": b'[{"id": "x", "image": "good.png", "num_options": 2, "conversations": "\xff\xfe"}]'}
# (case, what the dataset path is, the DatasetError's message by loader, a regex)
FILE_CASES = [
    ("missing-file", "absent.txt", dict.fromkeys(LOADERS, r"dataset file not found: .*absent\.txt")),
    ("empty-file", "empty.txt", {"mmbench": "cannot read empty.txt as a table", "pmc-vqa": "cannot read empty.txt",
                                 "pope": "the file has no rows", "jsonl": "the file has no rows",
                                 "paper": r"empty\.txt is not valid JSON"}),
    ("non-utf8", "KIND.txt", {"mmbench": "as a table: 'utf-8' codec can't decode", "pmc-vqa": "'utf-8' codec",
                              "pope": r"invalid JSON \(1\)", "jsonl": r"invalid JSON \(1\)",
                              "paper": "is not valid JSON: 'utf-8' codec can't decode"}),
    ("dev-zero-file", "/dev/zero", dict.fromkeys(LOADERS, "/dev/zero")),
    ("fifo-file", "pipe.png", dict.fromkeys(LOADERS, "pipe.png")),
    ("folder-file", "folder.png", dict.fromkeys(LOADERS, "folder.png")),
]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every loader on every case, in one guarded child process: {case id: its samples and skips, or its error}."""
    root = tmp_path_factory.mktemp("hostile")
    specs = {}
    for cases, loaders in ((PATH_CASES, PATH_LOADERS), (BASE64_CASES, BASE64_LOADERS)):
        for case, reference, _ in cases:
            for kind, write in loaders.items():
                folder = root / f"{kind}-{case}"
                folder.mkdir()
                plant_images(folder)
                specs[f"{kind}/{case}"] = f"{kind}:{write(folder, reference)}"
    plant_images(root)
    (root / "empty.txt").write_bytes(b"")
    for kind, content in NON_UTF8.items():
        (root / f"{kind}.txt").write_bytes(content)
    for case, target, _ in FILE_CASES:
        for kind in LOADERS:
            specs[f"{kind}/{case}"] = f"{kind}:{target if target.startswith('/') else root / target.replace('KIND', kind)}"
    done = subprocess.run([sys.executable, "-c", LOADER_WORKER, json.dumps(specs), str(IMAGE_LIMIT)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


ROW_CASES = [(kind, case, reason) for case, _, reason in PATH_CASES for kind in PATH_LOADERS] + \
    [(kind, case, reason) for case, _, reason in BASE64_CASES for kind in BASE64_LOADERS]


@pytest.mark.parametrize(("kind", "case", "reason"), ROW_CASES, ids=[f"{k}/{c}" for k, c, _ in ROW_CASES])
def test_a_hostile_image_skips_its_row_with_a_named_reason(loaded: dict[str, dict], kind: str, case: str,
                                                           reason: str) -> None:
    """The good row loads; the row with the hostile image is skipped with its reason, without reading it."""
    result = loaded[f"{kind}/{case}"]
    assert "error" not in result, result
    assert len(result["samples"]) == 1
    assert [found for _, found in result["skipped"]] == [reason]


FILE_ROWS = [(kind, case, messages[kind]) for case, _, messages in FILE_CASES for kind in LOADERS]


@pytest.mark.parametrize(("kind", "case", "message"), FILE_ROWS, ids=[f"{k}/{c}" for k, c, _ in FILE_ROWS])
def test_a_hostile_dataset_file_is_a_dataset_error(loaded: dict[str, dict], kind: str, case: str,
                                                   message: str) -> None:
    """A dataset file that is missing, empty, not UTF-8 or not a regular file fails as a whole, saying why."""
    result = loaded[f"{kind}/{case}"]
    assert result.get("error") == "DatasetError", result
    assert re.search(message, result["message"]), result["message"]


# ---- import-paper ----------------------------------------------------------------------------------------------


def flat_records(n: int = 40, seed: int = 0) -> list[dict]:
    """Flat-layout records whose gold is the option the image probe knows, so accuracy is 1 when labels align."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        a = int(rng.integers(2))
        knows = [0.95, 0.05] if a == 0 else [0.05, 0.95]
        records.append({"id": f"q{i}", "image_feature": (np.eye(2)[a] + 0.05 * rng.standard_normal(2)).tolist(),
                        "text_feature": rng.standard_normal(2).tolist(), "p_y_x1": knows, "p_y_x2": [0.5, 0.5],
                        "p_y_x1x2": knows, "answer": "AB"[a]})
    return records


def paper_records(n: int = 40, seed: int = 1) -> list[dict]:
    """The same kind of records in the paper's conversation layout, two options padded to four."""
    rng = np.random.default_rng(seed)
    gold = rng.integers(2, size=n)
    image = np.where(gold[:, None] == 0, [0.95, 0.05], [0.05, 0.95])
    x1 = np.eye(2)[gold] + 0.05 * rng.standard_normal((n, 2))
    return conversation_records(x1, rng.standard_normal((n, 2)), image, np.full((n, 2), 0.5), image,
                                num_options=[2] * n, width=4, labels=["AB"[g] for g in gold], prefix="p")


def gpt(record: dict) -> dict:
    """A conversation record's gpt turn."""
    return record["conversations"][1]


def edited(records: list[dict], index: int, change: Callable[[dict], None]) -> list[dict]:
    """A deep copy of `records` with `change` applied to record `index`."""
    copy = json.loads(json.dumps(records))
    change(copy[index])
    return copy


def every(records: list[dict], change: Callable[[dict], None]) -> list[dict]:
    """A deep copy of `records` with `change` applied to each."""
    copy = json.loads(json.dumps(records))
    for record in copy:
        change(record)
    return copy


def huge_feature(record: dict) -> None:
    """An integer no float can hold, as JSON allows."""
    record["image_feature"] = [10 ** 400, 0.0]


def past_options(record: dict) -> None:
    """Probability on option C of a two-option question."""
    gpt(record)["vl_prob"] = [0.5, 0.25, 0.25, 0.0]


def write_json(path: Path, data) -> Path:
    """`data` as a JSON file."""
    path.write_text(json.dumps(data))
    return path


# (case, its file's content, the reason printed for record-level skips)
RECORD_CASES = [
    ("bad-answer", edited(flat_records(), 10, lambda r: r.update(answer="Z")),
     "record q10: answer 'Z' is neither a letter A-B nor an index below 2"),
    ("boolean-answer", edited(flat_records(), 10, lambda r: r.update(answer=True)),
     "record q10: answer True is neither a letter A-B nor an index below 2"),
    ("huge-number", edited(flat_records(), 10, huge_feature), "record q10: x1 is not a list of numbers"),
    ("bad-label", edited(paper_records(), 10, lambda r: gpt(r).update(label="Z")),
     "record p10: label 'Z' is not one of the option letters A-B"),
    ("boolean-label", edited(paper_records(), 10, lambda r: gpt(r).update(label=True)),
     "record p10: label True is not one of the option letters A-B"),
    ("probability-past-options", edited(paper_records(), 10, past_options),
     "record p10: vl_prob puts probability past its 2 options"),
    ("no-conversations-later", edited(paper_records(), 20, lambda r: r.pop("conversations")),
     "record p20: no gpt turn in conversations"),
]
def write_text(path: Path, text: str) -> Path:
    """`text` as a file."""
    path.write_text(text)
    return path


def make_folder(path: Path) -> Path:
    """An empty folder."""
    path.mkdir()
    return path


def make_fifo(path: Path) -> Path:
    """A FIFO, which blocks whoever opens it for reading until a writer comes."""
    os.mkfifo(path)
    return path


# (case, a writer of the bad path in a folder, the error printed)
FILE_FAILURES: list[tuple[str, Callable[[Path], Path], str]] = [
    ("truncated-json", lambda d: write_text(d / "cut.json", json.dumps(flat_records())[:700]),
     "cut.json is not valid JSON"),
    ("a-folder", lambda d: make_folder(d / "dir.json"), "has no train or val/ folder"),
    ("a-fifo", lambda d: make_fifo(d / "pipe.json"), "stage-2 file is not a regular file"),
    ("a-number", lambda d: write_json(d / "n.json", 3), "n.json holds no list of records"),
    ("nested-too-deep", lambda d: write_text(d / "deep.json", "[" * 100_000),
     "deep.json is nested too deeply to parse as JSON"),
    ("every-answer-boolean", lambda d: write_json(d / "b.json", every(flat_records(), lambda r: r.update(answer=True))),
     "no usable record in b.json: 40 skipped"),
    ("every-probability-past-options", lambda d: write_json(d / "p.json", every(paper_records(), past_options)),
     "no usable record in p.json: 40 skipped ([('vl_prob puts probability past its 2 options', 40)])"),
    ("too-few-to-estimate", lambda d: write_json(d / "few.json", flat_records(3)),
     "need at least 4 samples to split into fitting and held-out sets, got 3"),
]


@pytest.fixture
def alarm() -> Iterator[None]:
    """Fail a test that runs past 120 s (a FIFO opened for reading would wait forever) instead of hanging."""

    def too_slow(*_) -> None:
        raise TimeoutError("the import ran past 120 s")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def stored(db: Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int], dict[str, list[tuple]]]:
    """What a database holds: its runs, its atoms view, its table sizes and every run's samples (id, gold, split)."""
    runs = read_runs(db)
    samples = {run_id: [(s.sample_id, s.gold, s.split) for s in load_samples(db, run_id)] for run_id in runs["run_id"]}
    return runs, read_atoms(db), table_sizes(db), samples


def same_rows(db: Path, before: tuple) -> bool:
    """Whether the database holds exactly what `before` recorded."""
    runs, atoms, sizes, samples = stored(db)
    return runs.equals(before[0]) and atoms.equals(before[1]) and sizes == before[2] and samples == before[3]


def import_paper(*args: str | Path) -> int:
    """`python -m pidcore import-paper ARGS --bootstrap 0`, in this process."""
    return main(["import-paper", *map(str, args), "--bootstrap", "0"])


@pytest.fixture(scope="module")
def earlier(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple]:
    """A database holding two good imports, one per layout, and what it holds."""
    folder = tmp_path_factory.mktemp("earlier")
    db = folder / "results.duckdb"
    flat = write_json(folder / "flat.json", {"model": "flat-model", "task": "T", "samples": flat_records(seed=5)})
    paper = write_json(folder / "paper.json", paper_records(seed=6))
    assert import_paper(flat, paper, "--db", db) == 0
    return db, stored(db)


def database_copy(earlier: tuple[Path, tuple], folder: Path) -> Path:
    """A copy of the earlier imports' database, for one case to write to."""
    db = folder / "results.duckdb"
    shutil.copy(earlier[0], db)
    return db


@pytest.mark.parametrize(("case", "records", "reason"), RECORD_CASES, ids=[case for case, _, _ in RECORD_CASES])
def test_a_bad_record_is_skipped_whole_and_every_other_label_stays_aligned(
        earlier: tuple[Path, tuple], tmp_path: Path, capsys: pytest.CaptureFixture, alarm: None, case: str,
        records: list[dict], reason: str) -> None:
    """The bad record is named with its reason; the others land with their own labels (accuracy 1) beside the
    earlier imports, which stay as they were."""
    db = database_copy(earlier, tmp_path)
    path = write_json(tmp_path / f"{case}.json", records)
    assert import_paper(path, "--db", db) == 0
    assert f"skipped {case}.json {reason}" in capsys.readouterr().err
    runs = read_runs(db)
    new = runs[~runs["run_id"].isin(earlier[1][0]["run_id"])]
    assert len(new) == 1 and len(runs) == len(earlier[1][0]) + 1
    samples = load_samples(db, new["run_id"].iloc[0])
    assert len(samples) == len(records) - 1
    assert all(sample.gold == int(np.argmax(sample.probs[0, 0])) for sample in samples)
    assert read_atoms(db).set_index("model").loc[new["model"].iloc[0], "accuracy"] == 1.0
    assert runs[runs["run_id"].isin(earlier[1][0]["run_id"])].reset_index(drop=True).equals(earlier[1][0])


@pytest.mark.parametrize(("case", "write", "message"), FILE_FAILURES, ids=[case for case, _, _ in FILE_FAILURES])
def test_a_bad_file_fails_alone_with_its_reason_and_leaves_no_row(
        earlier: tuple[Path, tuple], tmp_path: Path, capsys: pytest.CaptureFixture, alarm: None, case: str,
        write: Callable[[Path], Path], message: str) -> None:
    """Exit code 2, one line naming the file and the real reason, no traceback, and the database unchanged."""
    db = database_copy(earlier, tmp_path)
    path = write(tmp_path)
    assert import_paper(path, "--db", db) == 2
    err = capsys.readouterr().err
    assert f"error: {path}: " in err and message in err and "Traceback" not in err
    assert same_rows(db, earlier[1])


def test_the_good_files_after_a_bad_one_still_import(earlier: tuple[Path, tuple], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture, alarm: None) -> None:
    """A failed file (here: too few records, which fails only once the run was registered) is rolled back; the
    files after it import; the exit code says one failed."""
    db = database_copy(earlier, tmp_path)
    few = write_json(tmp_path / "few.json", flat_records(3))
    good = write_json(tmp_path / "good.json", {"model": "later", "samples": flat_records(seed=9)})
    assert import_paper(few, good, "--db", db) == 2
    assert "imported later: 40 records kept" in capsys.readouterr().out
    runs = read_runs(db)
    assert sorted(runs["model"]) == sorted([*earlier[1][0]["model"], "later"])
    assert table_sizes(db)["samples"] == earlier[1][2]["samples"] + 40


def test_a_folder_imports_its_good_models_and_names_the_failed_one(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                   alarm: None) -> None:
    """In a stage-2 folder, a model whose val file is truncated is named with its reason, and the models before
    and after it are imported."""
    folder = tmp_path / "stage2"
    for model in ("a", "b", "c"):
        for split, seed in (("train", 1), ("val", 2)):
            (folder / split).mkdir(parents=True, exist_ok=True)
            write_json(folder / split / f"{model}.json", paper_records(seed=seed))
    (folder / "val" / "b.json").write_text(json.dumps(paper_records(seed=2))[:500])
    db = tmp_path / "results.duckdb"
    assert import_paper(folder, "--db", db) == 2
    err = capsys.readouterr().err
    assert "1 of 3 models not imported (b: b.json is not valid JSON" in err and "imported: a, c" in err
    assert sorted(read_runs(db)["model"]) == ["a", "c"]


# ---- models ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pickle_only(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaVA's folder with its safetensors weights replaced by a pickle checkpoint (never unpickled)."""
    folder = build_tiny_model("llava", tmp_path_factory.mktemp("tiny") / "pickled")
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"a pickle that must never be loaded")
    return folder


def test_a_pickle_only_model_folder_is_refused_by_name(pickle_only: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    """One line naming the folder and saying safetensors only, exit code 2; a ValueError for library callers."""
    code = main(["profile", "--model", str(pickle_only), "--dataset", "shapes:synergy", "--limit", "4",
                 "--db", str(tmp_path / "r.duckdb"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert (f"error: cannot load model folder {pickle_only}: weights load from safetensors only, and it holds only "
            "pickle weights (pytorch_model.bin)") in err
    with pytest.raises(ModelLoadError, match="safetensors only"):
        load_vlm(str(pickle_only), device="cpu")
    assert issubclass(ModelLoadError, ValueError)


# ---- a full disk -----------------------------------------------------------------------------------------------

WRITE_SAMPLES = """
import numpy as np
from pidcore.store import SampleRow, write_samples
rng = np.random.default_rng(0)
write_samples({db!r}, [SampleRow("run", f"s{{i}}", i, 0, rng.standard_normal(64).astype(np.float32),
                                 rng.standard_normal(64).astype(np.float32), rng.random((3, 1, 2)), rng.random((3, 1)))
                       for i in range({n})])
"""
IMPORT = "from pidcore.cli import main\nsys.exit(main(['import-paper', {path!r}, '--db', {db!r}, '--bootstrap', '0']))"


def on_a_full_disk(db: Path, code: str) -> subprocess.CompletedProcess:
    """Run `code` in a child process that may not grow any file past the database's present size plus 4 kB (less
    than one more DuckDB block), so the commit or the checkpoint finds the disk full."""
    limit = db.stat().st_size + 4096
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", FULL_DISK_WORKER, str(limit), code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.mark.parametrize(("samples", "fails_at"), [(1000, "Failed to commit"), (20, "Failed to create checkpoint")],
                         ids=["commit", "checkpoint"])
def test_a_full_disk_fails_the_write_with_the_real_error(tmp_path: Path, samples: int, fails_at: str) -> None:
    """A unit too large for the log fails at COMMIT and says so (not "cannot rollback"); one whose log fits but
    whose checkpoint does not fails too instead of exiting 0 with the checkpoint unwritten."""
    db = tmp_path / "r.duckdb"
    ensure_schema(db)
    done = on_a_full_disk(db, WRITE_SAMPLES.format(db=str(db), n=samples))
    assert done.returncode != 0
    assert fails_at in done.stderr and "File too large" in done.stderr and "cannot rollback" not in done.stderr


def test_import_paper_on_a_full_disk_exits_2_and_leaves_no_row(tmp_path: Path) -> None:
    """The import says what failed in one line, exit code 2, and its partial rows are gone. (A fresh database: one
    with freed blocks inside could take the import without growing.)"""
    db = tmp_path / "results.duckdb"
    ensure_schema(db)
    path = write_json(tmp_path / "new.json", {"model": "new", "samples": flat_records(seed=11)})
    done = on_a_full_disk(db, IMPORT.format(path=str(path), db=str(db)))
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"error: {path}: " in done.stderr and "File too large" in done.stderr and "Traceback" not in done.stderr
    assert read_runs(db).empty and set(table_sizes(db).values()) == {0}


# ---- unusual images: bit depth, mode and EXIF orientation (N14, N15) ---------------------------------------------

GRADIENT_16 = np.tile((np.arange(64, dtype=np.uint32) * 1040).astype(np.uint16), (4, 1))  # 64 levels, 0..65520


def encoded(image: Image.Image, kind: str, **options) -> bytes:
    """`image` saved as `kind` (PIL's format name)."""
    buffer = io.BytesIO()
    image.save(buffer, kind, **options)
    return buffer.getvalue()


def grey_of(path: Path) -> np.ndarray:
    """The single grey channel `image_from_file` reads from `path` (its three RGB channels must agree)."""
    from pidcore.datasets.images import image_from_file
    rgb = np.asarray(image_from_file(path.parent, path.name))
    assert rgb.dtype == np.uint8 and (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    return rgb[..., 0]


def test_a_16_bit_greyscale_png_keeps_its_64_levels_scaled_by_its_high_byte(tmp_path: Path) -> None:
    """N14: PIL opens it as "I;16"; `convert("RGB")` clips it to [0 255]. Read as value >> 8 it keeps all 64
    levels; the same through base64."""
    from pidcore.datasets.images import image_from_base64
    data = encoded(Image.fromarray(GRADIENT_16), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    path = tmp_path / "g16.png"
    path.write_bytes(data)
    grey = grey_of(path)
    assert np.unique(grey).size == 64 and (grey == GRADIENT_16 >> 8).all()
    assert (np.asarray(image_from_base64(b64(data)))[..., 0] == GRADIENT_16 >> 8).all()


def test_every_image_mode_converts_to_rgb_as_faithfully_as_pil_allows(tmp_path: Path) -> None:
    """16-bit greyscale of every byte order and file kind is scaled by >> 8; integer ("I") and float ("F") images
    keep their levels (0-255 as they are, 16-bit ranges >> 8, floats in 0-1 times 255, other ranges stretched);
    every other mode is PIL's own `convert("RGB")`."""
    stretch = GRADIENT_16.astype(np.int64) - 40000
    big_endian = Image.frombuffer("I;16B", (64, 4), GRADIENT_16.astype(">u2").tobytes(), "raw", "I;16B", 0, 1)
    special = {  # name: (file bytes, the mode PIL opens it as, the grey levels expected)
        "I;16 png": (encoded(Image.fromarray(GRADIENT_16), "PNG"), "I;16", GRADIENT_16 >> 8),
        "I;16 tiff": (encoded(Image.fromarray(GRADIENT_16), "TIFF"), "I;16", GRADIENT_16 >> 8),
        "I;16B tiff": (encoded(big_endian, "TIFF"), "I;16B", GRADIENT_16 >> 8),
        "16-bit pgm": (encoded(Image.fromarray(GRADIENT_16), "PPM"), "I", GRADIENT_16 >> 8),
        "dark 16-bit pgm": (encoded(Image.fromarray(GRADIENT_16 // 300), "PPM"), "I", GRADIENT_16 // 300 >> 8),
        "I tiff 0-65535": (encoded(Image.fromarray(GRADIENT_16.astype(np.int32)), "TIFF"), "I", GRADIENT_16 >> 8),
        "I tiff 0-255": (encoded(Image.fromarray((GRADIENT_16 >> 8).astype(np.int32)), "TIFF"), "I",
                         GRADIENT_16 >> 8),
        "I tiff negative": (encoded(Image.fromarray(stretch.astype(np.int32)), "TIFF"), "I",
                            np.rint((stretch - stretch.min()) * 255 / np.ptp(stretch))),
        "F tiff 0-1": (encoded(Image.fromarray((GRADIENT_16 / 65535).astype(np.float32)), "TIFF"), "F",
                       np.rint(GRADIENT_16 / 65535 * 255)),
        "F tiff 0-65535": (encoded(Image.fromarray(GRADIENT_16.astype(np.float32)), "TIFF"), "F",
                           np.rint(GRADIENT_16 / GRADIENT_16.max() * 255)),
    }
    for name, (data, mode, expected) in special.items():
        path = tmp_path / f"{name}.img"
        path.write_bytes(data)
        assert Image.open(path).mode == mode, name
        grey = grey_of(path)
        assert (grey == expected).all(), (name, np.unique(grey))
        assert np.unique(grey).size == np.unique(expected).size, name
    colours = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    from pidcore.datasets.images import image_from_file
    for mode, kind in [("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "PNG"), ("PA", "TIFF"), ("RGB", "PNG"),
                       ("RGBA", "PNG"), ("CMYK", "TIFF"), ("CMYK", "JPEG"), ("YCbCr", "TIFF"), ("LAB", "TIFF")]:
        path = tmp_path / f"{mode}.{kind.lower()}"
        path.write_bytes(encoded(colours.convert(mode), kind))
        assert Image.open(path).mode == mode, (mode, kind)
        ours = image_from_file(tmp_path, path.name)
        assert ours.mode == "RGB" and (np.asarray(ours) == np.asarray(Image.open(path).convert("RGB"))).all(), mode


def exif_rotated(image: Image.Image, kind: str = "JPEG") -> bytes:
    """`image` saved with EXIF orientation 6 (tag 274: shown rotated 90 degrees clockwise)."""
    exif = Image.Exif()
    exif[274] = 6
    return encoded(image, kind, exif=exif.tobytes())


def test_an_exif_rotated_jpeg_reads_as_transformers_load_image_gives_it(tmp_path: Path) -> None:
    """N15: a 64x32 JPEG with orientation 6 reads 32x64, pixel for pixel what transformers' own `load_image`
    gives from the same bytes, from a file and from base64."""
    from transformers.image_utils import load_image

    from pidcore.datasets.images import image_from_base64, image_from_file
    pixels = np.random.default_rng(3).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    data = exif_rotated(Image.fromarray(pixels))
    path = tmp_path / "rotated.jpg"
    path.write_bytes(data)
    reference = load_image(str(path))
    assert Image.open(path).size == (64, 32) and reference.size == (32, 64)
    for ours in (image_from_file(tmp_path, "rotated.jpg"), image_from_base64(b64(data))):
        assert ours.mode == "RGB" and ours.size == (32, 64)
        assert (np.asarray(ours) == np.asarray(reference)).all()
    assert (np.asarray(load_image(b64(data))) == np.asarray(reference)).all()


def test_the_paper_readers_rgba_keeps_its_alpha_and_is_rotated_too(tmp_path: Path) -> None:
    """`keep_rgba` (the paper's base64 images) still returns RGBA with its alpha, now upright by its EXIF, the
    same pixels as `load_image` once alpha is dropped; `paper_rgb` composites it on white."""
    from transformers.image_utils import load_image

    from pidcore.datasets.images import image_from_bytes, image_from_reference, paper_rgb
    rgba = np.random.default_rng(4).integers(0, 256, (32, 64, 4), dtype=np.uint8)
    data = exif_rotated(Image.fromarray(rgba), "PNG")
    kept = image_from_reference(tmp_path, "data:image/png;base64," + b64(data), paper=True)
    assert kept.mode == "RGBA" and kept.size == (32, 64)
    assert (np.asarray(kept) == np.rot90(rgba, k=-1)).all()
    assert (np.asarray(kept.convert("RGB")) == np.asarray(load_image(b64(data)))).all()
    assert (np.asarray(image_from_bytes(data)) == np.asarray(load_image(b64(data)))).all()
    alpha = np.rot90(rgba, k=-1)[..., 3:] / 255
    on_white = np.asarray(paper_rgb(kept)).astype(int)
    assert np.abs(on_white - (np.rot90(rgba, k=-1)[..., :3] * alpha + 255 * (1 - alpha))).max() <= 1


# ---- an image the processor refuses (N13) --------------------------------------------------------------------


def test_an_image_qwen2_vl_refuses_is_an_image_refusal_naming_its_reason(tmp_path: Path) -> None:
    """N13 (the encoding half): Qwen2-VL's `smart_resize` refuses a 5000x1 image (aspect ratio over 200), ours
    under the `images` convention too; `encode_sample` says so as `ImageRefused` (a ValueError) with the size and
    the processor's reason, a refusal a caller can skip the sample on. Template and tokenisation faults stay plain
    ValueErrors; a 200x1 image still encodes."""
    from pidcore.models.loading import load_vlm
    from pidcore.probes.conventions import ProbeConventions
    from pidcore.probes.encoding import ImageRefused, encode_sample
    vlm = load_vlm(str(build_tiny_model("qwen2_vl", tmp_path / "qwen")), device="cpu")
    thin = Image.new("RGB", (5000, 1), (90, 90, 90))
    with pytest.raises(ImageRefused, match=r"refuses the image \(5000x1\): absolute aspect ratio must be smaller "
                                           r"than 200, got 5000\.0"):
        encode_sample(vlm, thin, "Which?", ["a", "b"])
    with pytest.raises(ImageRefused, match=r"refuses the image \(5000x1\): image ratio 5000 exceeds 200"):
        encode_sample(vlm, thin, "Which?", ["a", "b"], conventions=ProbeConventions(images=True))
    assert encode_sample(vlm, Image.new("RGB", (200, 1)), "Which?", ["a", "b"]).image_mask.any()


# ---- issue 26: one odd record is the one skipped, wherever it stands ---------------------------------------------


def longer(record: dict, keys: tuple[str, ...], where: Callable[[dict], dict] = lambda r: r) -> None:
    """Each of `keys` one zero longer: another option count (all three) or a probe of its own length (one)."""
    for key in keys:
        where(record)[key] = [*where(record)[key], 0.0]


ODD_RECORD_CASES = [
    ("N1-flat-probability-length", edited(flat_records(), 10, lambda r: r.update(p_y_x1=[0.9, 0.05, 0.05])),
     "record q10: its probabilities differ in length (full 2, image_only 3, text_only 2)"),
    ("N1-paper-probability-length", edited(paper_records(), 10, lambda r: longer(r, ("vl_prob",), gpt)),
     "record p10: its probabilities differ in length (vl_prob 5, v_prob 4, l_prob 4)"),
    ("N2-paper-first-record-wider", edited(paper_records(), 0, lambda r: longer(r, ("vl_prob", "v_prob", "l_prob"),
                                                                                 gpt)),
     "record p0: shapes (2,), (2,), k=5 differ from the first record of the most common shapes (39 of 40 records), "
     "'p1': (2,), (2,), k=4"),
    ("N2-flat-first-record-three-options",
     edited(flat_records(), 0, lambda r: r.update(p_y_x1=[0.9, 0.05, 0.05], p_y_x2=[0.4, 0.3, 0.3],
                                                  p_y_x1x2=[0.9, 0.05, 0.05])),
     "record q0: shapes (2,), (2,), k=3 differ from the first record of the most common shapes (39 of 40 records), "
     "'q1': (2,), (2,), k=2"),
    ("N2-flat-first-record-longer-feature", edited(flat_records(), 0, lambda r: longer(r, ("image_feature",))),
     "record q0: shapes (3,), (2,), k=2 differ from the first record of the most common shapes (39 of 40 records), "
     "'q1': (2,), (2,), k=2"),
]


@pytest.mark.parametrize(("case", "records", "reason"), ODD_RECORD_CASES, ids=[case for case, _, _ in ODD_RECORD_CASES])
def test_one_odd_record_first_or_not_is_skipped_whole_by_name_and_the_rest_import(
        earlier: tuple[Path, tuple], tmp_path: Path, capsys: pytest.CaptureFixture, alarm: None, case: str,
        records: list[dict], reason: str) -> None:
    """N1/N2: a record whose probes differ in length, or whose option count or feature size differs from the rest
    (as the first record too), is the one skipped, named with its reason; every other record imports aligned."""
    test_a_bad_record_is_skipped_whole_and_every_other_label_stays_aligned(earlier, tmp_path, capsys, None, case,
                                                                         records, reason)


def test_dedupe_first_keeps_the_first_usable_row_when_an_earlier_one_is_bad(tmp_path: Path) -> None:
    """N19: the first row of id "a" has a missing image, so the later good row of "a" is kept, and a third row of
    "a" is skipped naming the row that was kept; the bad row keeps its own reason."""
    (tmp_path / "good.png").write_bytes(png())
    rows = [{"id": "a", "image": "missing.png", "question": "Which?", "options": ["x", "y"]},
            {"id": "b", "image": "good.png", "question": "Which?", "options": ["x", "y"]},
            {"id": "a", "image": "good.png", "question": "Which now?", "options": ["x", "y"]},
            {"id": "a", "image": "good.png", "question": "Which again?", "options": ["x", "y"]}]
    from pidcore.datasets import load_dataset

    dataset = load_dataset(f"jsonl:{jsonl(tmp_path / 'd.jsonl', rows)}", dedupe="first")
    assert [(sample.id, sample.question) for sample in dataset.samples] == [("b", "Which?"), ("a", "Which now?")]
    reasons = dataset.skipped
    assert [row_id for row_id, _ in reasons] == ["a", "a"]
    assert "duplicate" not in reasons[0][1] and "missing.png" in reasons[0][1]
    assert reasons[1][1] == ("duplicate id: row 2 with id 'a' is kept, the first usable one (the rows before it were "
                             "skipped)")


def test_a_database_written_before_the_interval_columns_prints_its_atoms_without_intervals(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """N25: a rerun over stored atoms whose interval columns were added later (NULL) prints the atoms, each
    interval as missing, instead of a TypeError from formatting None."""
    import duckdb

    from pidcore.atoms import BOUND_COLUMNS
    from pidcore.store.schema import LAYER_ATOMS, TABLES, Table

    path, new, db = write_json(tmp_path / "f.json", flat_records()), tmp_path / "new.duckdb", tmp_path / "old.duckdb"
    assert import_paper(path, "--db", new) == 0
    old_atoms = Table(LAYER_ATOMS.name, tuple(c for c in LAYER_ATOMS.columns if c[0] not in BOUND_COLUMNS),
                      LAYER_ATOMS.key)
    with duckdb.connect(str(new), read_only=True) as connection:
        rows = {table.name: connection.table(table.name).to_arrow_table() for table in TABLES}
    rows[LAYER_ATOMS.name] = rows[LAYER_ATOMS.name].select(old_atoms.column_names)
    with duckdb.connect(str(db)) as connection:  # the database as written before the interval columns existed
        for table in (old_atoms if table is LAYER_ATOMS else table for table in TABLES):
            connection.execute(table.create_sql())
            connection.from_arrow(rows[table.name]).insert_into(table.name)
    capsys.readouterr()
    assert import_paper(path, "--db", db) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("    1 "))
    assert row.count("[no interval]") == 4 and "nan" not in row and "None" not in row
    assert read_atoms(db)["r_lo"].isna().all() and len(read_atoms(db)) == 1


# ---- issue 26: the weights are what they say (N9, N10, N12) ------------------------------------------------------

DROPPED = "language_model.model.layers.1.mlp.down_proj.weight"


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A healthy tiny LLaVA, copied by each test that damages it."""
    return build_tiny_model("llava", tmp_path_factory.mktemp("weights") / "llava")


def copied(model: Path, folder: Path) -> Path:
    """A copy of the model folder `model` in `folder`."""
    return Path(shutil.copytree(model, folder / model.name))


def drop_tensor(folder: Path, name: str) -> None:
    """Delete tensor `name` from the folder's model.safetensors, as a partial download or an edit would."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "model.safetensors")
    del tensors[name]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})


def edit_text_config(folder: Path, change: Callable[[dict], None]) -> None:
    """Apply `change` to the text config in the folder's config.json."""
    config = json.loads((folder / "config.json").read_text())
    change(config["text_config"])
    (folder / "config.json").write_text(json.dumps(config))


def tensor_span(path: Path, name: str) -> tuple[int, int]:
    """The byte range of tensor `name` in the safetensors file `path`, from its header."""
    with path.open("rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        offsets = json.loads(handle.read(header_length))[name]["data_offsets"]
    return 8 + header_length + offsets[0], 8 + header_length + offsets[1]


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "paligemma"])
def test_tied_embeddings_load_and_a_dropped_embedding_is_refused_in_every_family(tmp_path: Path, family: str) -> None:
    """N9: a healthy tiny model whose lm_head is tied to its embeddings (stored once) loads in every family, the
    tied lm_head not taken for missing; without its stored embeddings it is refused, both parameters named."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForImageTextToText

    folder = build_tiny_model(family, tmp_path / family)
    config = AutoConfig.from_pretrained(folder)
    config.tie_word_embeddings = config.get_text_config().tie_word_embeddings = True
    AutoModelForImageTextToText.from_config(config).save_pretrained(folder)
    vlm = load_vlm(str(folder), device="cpu")
    assert vlm.model.get_output_embeddings().weight is vlm.model.get_input_embeddings().weight
    drop_tensor(folder, next(name for name in load_file(folder / "model.safetensors") if "embed_tokens" in name))
    with pytest.raises(ModelLoadError, match=r"2 parameter\(s\) missing from the checkpoint \(they would be randomly "
                                             r"initialised\): lm_head\.weight, model\.\w+\.embed_tokens\.weight\."):
        load_vlm(str(folder), device="cpu")


def test_a_checkpoint_short_of_a_tensor_or_of_layers_is_refused_naming_them(tiny_llava: Path, tmp_path: Path) -> None:
    """N9: a checkpoint without one tensor, or a config of 4 layers over 2 layers of weights, was loaded with those
    parameters randomly initialised; it is refused, naming the first five and counting the rest."""
    partial = copied(tiny_llava, tmp_path / "partial")
    drop_tensor(partial, DROPPED)
    with pytest.raises(ModelLoadError) as refused:
        load_vlm(str(partial), device="cpu")
    assert str(refused.value) == (
        f"cannot load the weights of model {str(partial)!r}: they do not match its config: 1 parameter(s) missing "
        "from the checkpoint (they would be randomly initialised): model.language_model.layers.1.mlp.down_proj.weight. "
        "The checkpoint is partly downloaded or was edited, or config.json describes another model: download it "
        "again, or save it again with save_pretrained")
    deeper = copied(tiny_llava, tmp_path / "deeper")
    edit_text_config(deeper, lambda text: text.update(num_hidden_layers=4))
    with pytest.raises(ModelLoadError, match=r"18 parameter\(s\) missing from the checkpoint \(they would be randomly "
                                             r"initialised\): model\.language_model\.layers\.2\.input_layernorm\.weight"
                                             r"(, model\.language_model\.layers\.2\.[\w.]+){4} and 13 more\. "):
        load_vlm(str(deeper), device="cpu")


def test_profile_refuses_partial_weights_in_one_line_and_stores_nothing(tiny_llava: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """N9: `pidcore profile` on a checkpoint short of a tensor exits 2 with the refusal on stderr, no traceback,
    instead of profiling a partly random model and exiting 0."""
    partial = copied(tiny_llava, tmp_path / "partial")
    drop_tensor(partial, DROPPED)
    db = tmp_path / "r.duckdb"
    code = main(["profile", "--model", str(partial), "--dataset", "shapes:synergy", "--limit", "8", "--bootstrap", "0",
                 "--db", str(db), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert (f"error: cannot load the weights of model {str(partial)!r}: they do not match its config: 1 parameter(s) "
            "missing from the checkpoint") in err and "model.language_model.layers.1.mlp.down_proj.weight" in err
    assert not db.exists() or read_runs(db).empty


def more_vocabulary(folder: Path) -> None:
    """config.json says 16 more tokens than the weights hold."""
    edit_text_config(folder, lambda text: text.update(vocab_size=text["vocab_size"] + 16))


def cut_short(folder: Path) -> None:
    """model.safetensors loses its second half, as a failed download or copy leaves it."""
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 2])


@pytest.mark.parametrize(("damage", "message"), [
    (more_vocabulary, r"2 parameter\(s\) of another shape in the checkpoint than the config gives: "
                      r"lm_head\.weight \(checkpoint \((\d+), 32\), config \((\d+), 32\)\), "
                      r"model\.language_model\.embed_tokens\.weight \(checkpoint \(\1, 32\), config \(\2, 32\)\)\. "
                      r"The checkpoint is partly downloaded"),
    (cut_short, r"model\.safetensors is not a whole safetensors file \(Error while deserializing header: incomplete "
                r"metadata, file not fully covered\); it is likely cut short by a failed download or copy: download "
                r"it again")], ids=["N10-vocab-size", "N10-truncated"])
def test_weights_of_other_shapes_or_cut_short_are_a_model_load_error(tiny_llava: Path, tmp_path: Path,
                                                                     damage: Callable[[Path], None],
                                                                     message: str) -> None:
    """N10: a config.json vocab_size 16 over the weights' (a RuntimeError before) and a truncated model.safetensors
    (a SafetensorError before) are each a ModelLoadError naming the model and the reason, shapes included."""
    folder = copied(tiny_llava, tmp_path / "damaged")
    damage(folder)
    with pytest.raises(ModelLoadError, match=rf"^cannot load the weights of model {re.escape(repr(str(folder)))}: "
                                             rf".*{message}") as refused:
        load_vlm(str(folder), device="cpu")
    if damage is more_vocabulary:
        stored, configured = map(int, re.search(message, str(refused.value)).groups())
        assert configured == stored + 16


@pytest.fixture(scope="module")
def wide_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaVA of hidden size 256 (11 MB of weights): its first projector layer and the middle of its tensor
    data lie between the 16 chunks of 64 KiB that fingerprints used to read."""
    return build_tiny_model("llava", tmp_path_factory.mktemp("wide") / "llava", hidden=256)


def test_weights_edited_in_place_anywhere_are_another_model(wide_llava: Path, tmp_path: Path) -> None:
    """N12: the first projector layer multiplied by -50 in place (same size, same header), or one byte flipped in
    the middle of the tensor data, changes the model's identity, so earlier results are not reused for it."""
    folder = copied(wide_llava, tmp_path / "edited")
    weights = folder / "model.safetensors"
    before = model_identity(str(folder))
    with weights.open("r+b") as handle:
        for name in ("multi_modal_projector.linear_1.weight", "multi_modal_projector.linear_1.bias"):
            start, end = tensor_span(weights, name)
            handle.seek(start)
            scaled = np.frombuffer(handle.read(end - start), dtype="<f4") * -50
            handle.seek(start)
            handle.write(scaled.astype("<f4").tobytes())
    projector_edited = model_identity(str(folder))
    assert weights.stat().st_size == (wide_llava / "model.safetensors").stat().st_size
    assert projector_edited["path"] == before["path"] and projector_edited["weights"] != before["weights"]
    middle = weights.stat().st_size // 2  # in the tensor data: the header is 10 kB of the 11 MB
    with weights.open("r+b") as handle:
        handle.seek(middle)
        flipped = bytes([handle.read(1)[0] ^ 0x01])
        handle.seek(middle)
        handle.write(flipped)
    assert model_identity(str(folder))["weights"] not in (before["weights"], projector_edited["weights"])


def test_a_weights_digest_is_cached_until_the_file_changes(tiny_llava: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """N12: each safetensors file is hashed whole once: a second fingerprint of an unchanged file reads the cache
    in $PIDCORE_CACHE_DIR, a file changed too recently for its stamp to be trusted is not cached, a changed mtime
    hashes it again, and a cache that cannot be written only costs the hashing."""
    from pidcore.models import identity

    monkeypatch.setenv("PIDCORE_CACHE_DIR", str(tmp_path / "cache"))
    folder = copied(tiny_llava, tmp_path / "cached")
    weights = folder / "model.safetensors"
    hashed, hash_file = [], identity.hash_file
    monkeypatch.setattr(identity, "hash_file", lambda path: hashed.append(path.name) or hash_file(path))
    monkeypatch.setattr(identity, "SETTLED_NS", 10**18)
    first = model_identity(str(folder))
    assert model_identity(str(folder)) == first and hashed == ["model.safetensors"] * 2
    monkeypatch.setattr(identity, "SETTLED_NS", 0)
    hashed.clear()
    assert model_identity(str(folder)) == first == model_identity(str(folder)) and hashed == ["model.safetensors"]
    assert str(weights.resolve()) in json.loads((tmp_path / "cache" / "weights-digests.json").read_text())
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns - 10**9))
    assert model_identity(str(folder)) == first and hashed == ["model.safetensors"] * 2
    monkeypatch.setenv("PIDCORE_CACHE_DIR", str(weights))  # a file: no cache can be read or written under it
    assert model_identity(str(folder)) == first and hashed == ["model.safetensors"] * 3


# ---- issue 26: an image the processor refuses skips its sample, not the run (N13) --------------------------------


@pytest.mark.parametrize("probes", ["clean", "published"])
def test_an_image_the_processor_refuses_skips_that_sample_named_and_the_run_goes_on(tmp_path: Path, probes: str,
                                                                                   caplog) -> None:
    """N13: one 5000x1 image in a Qwen2-VL task used to abort the whole run, on every rerun. Now that sample is
    skipped with the processor's reason, named in a warning and counted; the other samples are probed and the
    atoms estimated; a rerun resumes to the same rows and skips it again, aloud."""
    model = build_tiny_model("qwen2_vl", tmp_path / "qwen")
    with open(tmp_path / "task.jsonl", "w") as handle:
        for i in range(10):
            size = (5000, 1) if i == 3 else (36, 36)
            Image.new("RGB", size, (255 * (i % 2), 0, 0)).save(tmp_path / f"img{i}.png")
            handle.write(json.dumps({"id": f"q{i}", "image": f"img{i}.png", "question": "Red?",
                                     "options": ["yes", "no"], "answer": "yes" if i % 2 else "no"}) + "\n")
    db = tmp_path / "r.duckdb"
    command = ["profile", "--model", str(model), "--dataset", f"jsonl:{tmp_path / 'task.jsonl'}", "--db", str(db),
               "--device", "cpu", "--layers", "last", "--bootstrap", "0", "--probes", probes]
    for attempt in range(2):
        caplog.clear()
        assert main(command) == 0
        warnings = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
        assert any(re.search(r"skipped sample q3: the processor refuses the image \(5000x1\)", text)
                   for text in warnings), warnings
        assert any("1 sample(s) skipped because the processor refuses their images: q3" in text for text in warnings)
        run_id = read_runs(db)["run_id"].item()
        stored = load_samples(db, run_id)
        assert [row.sample_id for row in stored] == [f"q{i}" for i in range(10) if i != 3]


def test_stored_arrays_read_back_exactly_and_an_object_array_is_refused():
    """blob_to_array's fast path (each distinct .npy header parsed once) gives np.load's arrays, writable copies."""
    import io

    import numpy as np

    from pidcore.store.blobs import array_to_blob, blob_to_array

    arrays = [np.random.default_rng(0).random((3, 5, 4)).astype(np.float32), np.arange(7), np.zeros((0, 3)),
              np.ones((2, 3), dtype=">f8"), np.array([True, False])]
    for array in arrays:
        read = blob_to_array(array_to_blob(array))
        assert read.dtype == array.dtype and read.shape == array.shape and np.array_equal(read, array)
        read[...] = 0  # a copy, not a view of the blob
    crafted = io.BytesIO()  # a version-1.0 header naming an object dtype, as a crafted database could hold
    np.lib.format.write_array_header_1_0(crafted, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    with pytest.raises(ValueError, match="would need pickle to read; refused"):
        blob_to_array(crafted.getvalue() + b"\0" * 8)
