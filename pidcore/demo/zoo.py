"""The demo zoo: which tiny VLMs are trained, their sizes, their stage-2 data mix and their training schedule."""

from __future__ import annotations

from dataclasses import dataclass, field

BALANCED = {"synergy": 2.0, "language": 1.0, "vision": 1.0, "redundancy": 1.0}
LANGUAGE_HEAVY = {"synergy": 2.0, "language": 3.0, "vision": 1.0, "redundancy": 3.0}


@dataclass(frozen=True)
class ModelSpec:
    """One zoo member: its name in the store, its family (config model type), size and stage-2 task mix."""

    name: str
    family: str
    hidden: int
    layers: int
    mix: dict[str, float] = field(default_factory=lambda: dict(BALANCED))


@dataclass(frozen=True)
class Stage:
    """A training stage: its steps and how many evenly spaced checkpoints it keeps (the last at its end)."""

    steps: int
    checkpoints: int


@dataclass(frozen=True)
class Schedule:
    """Training steps of each phase, the two stages, batch size, learning rate and stage 2's modality dropout."""

    vision_steps: int = 250
    language_steps: int = 250
    stage1: Stage = Stage(steps=300, checkpoints=2)
    stage2: Stage = Stage(steps=1200, checkpoints=6)
    batch_size: int = 32
    learning_rate: float = 3e-3
    modality_dropout: float = 0.3


ZOO = (
    ModelSpec("llava-s", "llava", hidden=64, layers=4),
    ModelSpec("llava-m", "llava", hidden=128, layers=6),
    ModelSpec("idefics3-s", "idefics3", hidden=64, layers=4, mix=LANGUAGE_HEAVY),
    ModelSpec("qwen2vl-s", "qwen2_vl", hidden=64, layers=4),
)

QUICK_ZOO = (ModelSpec("llava-xs", "llava", hidden=32, layers=2), ModelSpec("qwen2vl-xs", "qwen2_vl", hidden=32,
                                                                            layers=2, mix=LANGUAGE_HEAVY))
QUICK_SCHEDULE = Schedule(vision_steps=10, language_steps=10, stage1=Stage(steps=10, checkpoints=1),
                          stage2=Stage(steps=20, checkpoints=1), batch_size=8)
