"""`python -m pidcore demo build`: train the zoo, profile every model x task x layer x checkpoint, ship the result.

The database is built beside the shipped one and replaces it only when the build has finished, so a failed
or interrupted build loses nothing. Checkpoints live in a work folder; each model's final checkpoint is
copied to `data/models/NAME`. The zoo is probed with the `clean` probe conventions (ours: only the question and
options masked, each model's own positions): the planted regimes are stated over question and options, and the
shipped database was built that way before `--probes` existed.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm import tqdm

from pidcore.datasets import shapes
from pidcore.demo import training
from pidcore.demo.summary import summarise
from pidcore.demo.zoo import ZOO, ModelSpec, Schedule
from pidcore.estimators import discrete_pid
from pidcore.models.loading import LoadedVLM, load_vlm
from pidcore.models.tiny import build_tiny_model
from pidcore.pipeline.gaussian_layers import estimate_gaussian_layers
from pidcore.pipeline.layers import estimate_layers
from pidcore.pipeline.profiling import probe_run
from pidcore.pipeline.settings import ProfileSettings
from pidcore.probes.conventions import CLEAN
from pidcore.shipped import DATA
from pidcore.store import compact, read_runs, write_task_pid
from pidcore.store.write import delete_runs

logger = logging.getLogger("pidcore.demo")


@dataclass(frozen=True)
class Checkpoint:
    """A saved checkpoint: its folder, name in the store, global step and stage."""

    folder: Path
    name: str
    step: int
    stage: str


def build_demo(data_dir: Path = DATA, zoo: tuple[ModelSpec, ...] = ZOO, schedule: Schedule = Schedule(),
               eval_samples: int = 192, seed: int = 0, work_dir: Path | None = None, keep_others: bool = False) -> str:
    """Build the zoo and return the summary (also written to data_dir/demo_summary.md).

    keep_others: keep the shipped results of models outside `zoo` (rebuild some models, keep the rest).
    """
    data_dir = Path(data_dir)
    work = Path(work_dir) if work_dir else data_dir.parent / "build" / "demo-work"
    shutil.rmtree(work, ignore_errors=True)
    building = data_dir / "results.duckdb.building"
    building.unlink(missing_ok=True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    store_task_pid(building)
    finals = {}
    for spec in zoo:
        checkpoints = train_model(spec, schedule, work, seed)
        with tqdm(total=len(checkpoints) * len(shapes.TASKS), desc=f"{spec.name}: profiling", unit="run") as bar:
            for checkpoint in checkpoints:
                profile_checkpoint(checkpoint, building, eval_samples, seed, final=checkpoint is checkpoints[-1],
                                   done=bar.update)
        finals[spec.name] = checkpoints[-1].folder
    ship(finals, building, data_dir, keep_others)
    summary = summarise(data_dir / "results.duckdb")
    (data_dir / "demo_summary.md").write_text(summary)
    return summary


def store_task_pid(db: Path) -> None:
    """The exact PID of every task's generator, with the atom the task plants."""
    exact = {task: (discrete_pid(shapes.joint(task)).atoms(), shapes.PLANTED[task]) for task in shapes.TASKS}
    write_task_pid(db, exact)


def train_model(spec: ModelSpec, schedule: Schedule, work: Path, seed: int) -> list[Checkpoint]:
    """Pretrain, then stages 1 and 2, saving the checkpoints the schedule asks for; returns them in order."""
    logger.info("%s: building a random %s (hidden %d, %d layers)", spec.name, spec.family, spec.hidden, spec.layers)
    init = build_tiny_model(spec.family, work / "init" / spec.name, hidden=spec.hidden, layers=spec.layers, seed=seed)
    vlm = load_vlm(str(init), device="cpu", dtype="float32")
    rng = random.Random(f"{spec.name}-{seed}")
    torch.manual_seed(seed)
    head = training.vision_head(vlm)
    _phase(spec, "vision pretraining", vlm, training.parameters(vlm, "vision") + training.parameters(vlm, "projector")
           + list(head.parameters()), training.vision_batches(vlm, head, rng, schedule.batch_size),
           schedule.vision_steps, schedule.learning_rate)
    training.reinitialise(vlm.model.get_submodule(vlm.adapter.projector_module), seed)
    _phase(spec, "language pretraining", vlm, training.parameters(vlm, "language"),
           training.language_batches(vlm, rng, schedule.batch_size), schedule.language_steps, schedule.learning_rate)
    checkpoints = [_save(vlm, spec, work, 0, "1")]
    checkpoints += _phase(spec, "stage 1 (projector alignment)", vlm, training.parameters(vlm, "projector"),
                          training.caption_batches(vlm, rng, schedule.batch_size), schedule.stage1.steps,
                          schedule.learning_rate, work, "1", 0, schedule.stage1.checkpoints)
    checkpoints += _phase(spec, "stage 2 (instruction tuning)", vlm,
                          training.parameters(vlm, "projector") + training.parameters(vlm, "language"),
                          training.instruction_batches(vlm, rng, schedule.batch_size, spec.mix,
                                                       schedule.modality_dropout),
                          schedule.stage2.steps, stage2_learning_rate(spec, schedule), work, "2", schedule.stage1.steps,
                          schedule.stage2.checkpoints)
    return checkpoints


def stage2_learning_rate(spec: ModelSpec, schedule: Schedule) -> float:
    """Stage 2 trains the whole language model, so its learning rate scales inversely with width (64 -> 1x)."""
    return schedule.learning_rate * 64 / spec.hidden


def _phase(spec: ModelSpec, title: str, vlm: LoadedVLM, trainable, batches, steps: int, learning_rate: float,
           work: Path | None = None, stage: str = "", first_step: int = 0, keep: int = 0) -> list[Checkpoint]:
    """Train one phase, logging progress, and save `keep` evenly spaced checkpoints (the last at its end)."""
    save_at = {round(steps * (i + 1) / keep) for i in range(keep)} if keep else set()
    saved: list[Checkpoint] = []

    def on_step(step: int) -> None:
        if step % max(1, steps // 4) == 0 or step == steps:
            logger.info("%s: %s step %d/%d", spec.name, title, step, steps)
        if step in save_at:
            saved.append(_save(vlm, spec, work, first_step + step, stage))

    loss = training.train(vlm, trainable, batches, steps, learning_rate, on_step)
    logger.info("%s: %s done, last loss %.4f", spec.name, title, loss)
    return saved


def _save(vlm: LoadedVLM, spec: ModelSpec, work: Path, step: int, stage: str) -> Checkpoint:
    name = f"stage{stage}-step{step}"
    folder = work / "checkpoints" / name / spec.name
    vlm.model.save_pretrained(folder)
    vlm.processor.save_pretrained(folder)
    return Checkpoint(folder, name, step, stage)


def profile_checkpoint(checkpoint: Checkpoint, db: Path, eval_samples: int, seed: int, final: bool,
                       done: Callable[[], object] = lambda: None) -> None:
    """Profile one checkpoint on every task at every layer with the published estimator (the default), then
    estimate the calibrated one from the same probe outputs; for the final checkpoint also the published
    estimator without the letter-mass fallback (the summary compares the two), the Gaussian PID on the hidden
    states (the depth page sets the two estimator families side by side), and keep the published estimator's
    fitted networks for the case study. The checkpoint loads once for all tasks."""
    vlm = load_vlm(str(checkpoint.folder), device="cpu", dtype="float32")
    for task in shapes.TASKS:
        settings = ProfileSettings(model=str(checkpoint.folder), dataset=f"shapes:{task}", db=str(db), layers="all",
                                   device="cpu", dtype="float32", limit=eval_samples, seed=seed,
                                   checkpoint=checkpoint.name, step=checkpoint.step, stage=checkpoint.stage,
                                   task=task, keep_fitted=final, progress=False, probes=CLEAN, hidden_states=final)
        settings, run_id = probe_run(settings, vlm)
        variants = [settings, replace(settings, estimator_mode="calibrated", keep_fitted=False)]
        if final:
            variants.append(replace(settings, letter_mass_fallback=False, keep_fitted=False))
            estimate_gaussian_layers(settings, run_id)
        for variant in variants:
            estimate_layers(variant, run_id)
        done()


def reprofile_finals(data_dir: Path = DATA, zoo: tuple[ModelSpec, ...] = ZOO, eval_samples: int = 192,
                     seed: int = 0) -> str:
    """Profile the shipped final models (data/models/NAME) again as their final checkpoints, without training,
    replacing those checkpoints' runs: what a change of the probes or estimators needs, in minutes instead of the
    whole build. Like build_demo, the database is built beside the shipped one and replaces it at the end."""
    shipped = data_dir / "results.duckdb"
    building = data_dir / "results.duckdb.building"
    shutil.copyfile(shipped, building)
    runs = read_runs(building)
    with tqdm(total=len(zoo) * len(shapes.TASKS), desc="final checkpoints: profiling", unit="run") as bar:
        for spec in zoo:
            mine = runs[runs["model"] == spec.name]
            if mine.empty:
                raise ValueError(f"{shipped} has no runs of {spec.name}; build it with `demo build --only`")
            final = mine[mine["step"] == mine["step"].max()]
            first = final.iloc[0]
            checkpoint = Checkpoint(data_dir / "models" / spec.name, first["checkpoint"], int(first["step"]),
                                    first["stage"])
            delete_runs(building, final["run_id"].tolist())
            profile_checkpoint(checkpoint, building, eval_samples, seed, final=True, done=bar.update)
    ship({}, building, data_dir)
    summary = summarise(shipped)
    (data_dir / "demo_summary.md").write_text(summary)
    return summary


def ship(finals: dict[str, Path], building: Path, data_dir: Path, keep_others: bool = False) -> None:
    """Copy the final models under data/models and put a compact copy of the new database in place of the old one."""
    models = data_dir / "models"
    for name, folder in finals.items():
        shutil.rmtree(models / name, ignore_errors=True)
        shutil.copytree(folder, models / name)
    compacted = data_dir / "results.duckdb.compact"
    compacted.unlink(missing_ok=True)
    shipped = data_dir / "results.duckdb"
    if keep_others and shipped.is_file():
        compact(shipped, compacted, exclude_models=set(finals))
    compact(building, compacted)
    os.replace(compacted, shipped)
    building.unlink()
