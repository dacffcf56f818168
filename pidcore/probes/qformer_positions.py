"""The paper's stretch of InstructBLIP's Q-Former position table (the `qformer_positions` convention).

Before anything runs, `embeds/inblip_embed.py` (lines 90-119) replaces the Q-Former's absolute position embeddings
(512 rows in the released checkpoints) by 1024 rows linearly interpolated from them (`F.interpolate`, mode "linear",
align_corners=True), so that long questions fit; every prompt position then reads a new vector (row i of the new
table lies at old position i * 511 / 1023), short prompts included. Here the stretched table stands in for the
model's own only while image features are computed, so the loaded model is left as it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

# The length the paper's script stretches the table to (inblip_embed.py line 118, `new_len = 1024`).
PAPER_QFORMER_POSITIONS = 1024


def stretched_table(weight: torch.Tensor, length: int) -> torch.Tensor:
    """A position table [length, d] linearly interpolated along the positions from `weight` [old, d], as the
    script computes it (in the table's own dtype)."""
    return nn.functional.interpolate(weight.T.unsqueeze(0), size=length, mode="linear",
                                     align_corners=True).squeeze(0).T.contiguous()


@contextmanager
def qformer_positions(model: nn.Module, length: int | None) -> Iterator[None]:
    """Within the block, the model's Q-Former reads positions from a table stretched to `length` rows (nothing
    changes for None, or where the table has that many rows already, as in the script)."""
    embeddings = model.qformer.embeddings if length is not None else None
    if embeddings is None or embeddings.position_embeddings.num_embeddings >= length:
        yield
        return
    table, positions = embeddings.position_embeddings, embeddings.position_ids
    with torch.no_grad():
        stretched = nn.Embedding.from_pretrained(stretched_table(table.weight, length), freeze=True)
    embeddings.position_embeddings = stretched
    embeddings.position_ids = torch.arange(length, device=positions.device).unsqueeze(0)
    try:
        yield
    finally:
        embeddings.position_embeddings, embeddings.position_ids = table, positions
