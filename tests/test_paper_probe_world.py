"""The paper-probe world (tests/paper_probe_world.py): it builds offline into the bytes the paper's scripts read, both
tiny models load with pidcore's loader and carry Qwen's real special-token ids, and the oracle's fixtures parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pidcore.models.loading import load_vlm
from tests.paper_probe_world import (
    FAMILIES,
    FIXTURES,
    FULL_VOCAB,
    REPETITION_PENALTY,
    build_world,
    compact_to_full,
    world_digests,
)

REAL_IDS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652,
            "<|vision_end|>": 151653, "<|image_pad|>": 151655, "<|video_pad|>": 151656}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    return build_world(tmp_path_factory.mktemp("paper-probe-world"))


def test_world_is_the_one_the_oracle_read(world):
    recorded = json.loads((FIXTURES / "world_sha256.json").read_text())
    assert world_digests(world["data"].parent) == recorded


@pytest.mark.parametrize("family", FAMILIES)
def test_model_loads_with_real_qwen_ids(world, family):
    vlm = load_vlm(str(world[family]), "cpu", "float32")
    tokenizer = vlm.processor.tokenizer
    assert {token: tokenizer.convert_tokens_to_ids(token) for token in REAL_IDS} == REAL_IDS
    assert vlm.model.config.model_type == family
    assert vlm.model.config.image_token_id == 151655
    assert [len(tokenizer.encode(letter, add_special_tokens=False)) for letter in "ABCD"] == [1, 1, 1, 1]
    assert (vlm.model.generation_config.repetition_penalty or 1.0) == (REPETITION_PENALTY[family] or 1.0)
    others = torch.ones(FULL_VOCAB, dtype=torch.bool)
    others[compact_to_full()] = False
    for table in (vlm.model.get_input_embeddings().weight, vlm.model.get_output_embeddings().weight):
        assert table.shape[0] == FULL_VOCAB
        assert not table[others].any()
        assert table[~others].abs().sum(1).min() > 0


def test_fixture_files_parse(world):
    data = {split: json.loads(world[split].read_text()) for split in ("train", "val")}
    assert [len(records) for records in data.values()] == [24, 12]
    for records in data.values():
        for record in records:
            assert set(record) == {"id", "image", "num_options", "conversations"}
            human, gpt = record["conversations"]
            assert human["value"].endswith("\n<image>") and gpt["value"] in "ABCD"[: record["num_options"]]
    for family in FAMILIES:
        oracle = FIXTURES / "oracle" / family
        stats = json.loads((oracle / "stats.json").read_text())
        assert {len(stats[kind][part]) for kind in ("text", "image") for part in ("mean", "std")} == {64}
        for split, records in data.items():
            produced = json.loads((oracle / f"{split}.json").read_text())["records"]
            assert [record["id"] for record in produced] == [record["id"] for record in records]
            for record in produced:
                reply = record["conversations"][1]
                assert "image" not in record
                assert len(reply["v_feature"]) == len(reply["l_feature"]) == 64
                for key in ("v_prob", "l_prob", "vl_prob"):
                    assert len(reply[key]) == 4 and abs(sum(reply[key]) - 1) < 1e-5
    counts = json.loads((FIXTURES / "oracle" / "token_counts.json").read_text())
    assert {record["image_tokens"] for split in counts.values() for record in split} >= {256}
