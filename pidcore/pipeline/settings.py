"""What a run depends on: the settings of `profile` and `import-paper`, and the run id they hash to."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from pidcore.atoms import GAUSSIAN_COMPONENTS, GAUSSIAN_ESTIMATOR
from pidcore.probes.conventions import CLEAN, PUBLISHED


def estimator_name(mode: str, fallback: bool) -> str:
    """The estimator's name in the store: batch-MODE, and the letter-mass fallback where it is not the mode's
    default (on for published, off for calibrated)."""
    default = mode == "published"
    suffix = "" if fallback == default else ("+fallback" if fallback else "-nofallback")
    return f"batch-{mode}{suffix}"


DEFAULT_ESTIMATOR = estimator_name("published", True)


def gaussian_estimator_name(components: int, gaussianise: bool) -> str:
    """The Gaussian PID's name in the store: `gaussian`, with what differs from the defaults (PCA to
    GAUSSIAN_COMPONENTS per source, marginals Gaussianised): e.g. gaussian-pca16, gaussian-raw."""
    parts = [GAUSSIAN_ESTIMATOR] + ([f"pca{components}"] if components != GAUSSIAN_COMPONENTS else [])
    return "-".join(parts + ([] if gaussianise else ["raw"]))
# The dataset spec of a run `import-paper` made from the paper pipeline's stage-2 files: IMPORTED_PREFIX + path.
IMPORTED_PREFIX = "paper-stage2:"


def probe_label(stored: dict) -> str:
    """The probe conventions a run's stored settings record, for the diagnostics: "imported" for the paper
    pipeline's own probes, the mode with the conventions it applied for a profiled run, "clean" for a run made
    before the option existed, "" for rows without settings of a run (the paper's published figures)."""
    if "dataset" not in stored:
        return ""
    if str(stored["dataset"]).startswith(IMPORTED_PREFIX):
        return "imported (the paper pipeline's own stage 2)"
    applied = stored.get("probe_conventions")
    mode = stored.get("probes", CLEAN)
    return f"{mode} ({', '.join(applied)})" if applied else mode


def pick_estimator(available: list[str], wanted: str | None = None) -> str:
    """The estimator to read: `wanted` (an error naming the others when absent), else the default where present,
    else the first by name."""
    if not available:
        raise ValueError("the database holds no estimator's rows")
    if wanted is not None and wanted not in available:
        raise ValueError(f"no rows of estimator {wanted!r}; the database holds {', '.join(available)}")
    return wanted or (DEFAULT_ESTIMATOR if DEFAULT_ESTIMATOR in available else sorted(available)[0])


def applies_fallback(estimator: str) -> bool:
    """Whether a stored estimator name (estimator_name's output) applied the letter-mass fallback."""
    return estimator.endswith("+fallback") or (estimator.startswith("batch-published")
                                               and not estimator.endswith("-nofallback"))


# Settings besides the model, dataset and task that change a run's stored rows. `probes` joins them when the run
# probed a model (not an import) with other conventions than "clean": runs made before the option existed followed
# today's clean conventions and keep their ids.
RUN_KEYS = ("dtype", "limit", "seed", "checkpoint", "step", "stage", "calibration_samples")

# A checkpoint step is stored as a DuckDB BIGINT.
STEP_RANGE = (-(2**63), 2**63 - 1)
# The KIND of a KIND:PATH spec, as the dataset loader reads it: case does not matter.
_KIND = re.compile(r"[A-Za-z0-9_-]+")
# How a model spelt as a path starts; a hub id never does.
PATH_STARTS = ("/", ".", "~")


def check_step(step: int | None) -> None:
    """Refuse a checkpoint step the store cannot hold (a DuckDB BIGINT), naming it and the range."""
    if step is not None and not STEP_RANGE[0] <= step <= STEP_RANGE[1]:
        raise ValueError(f"checkpoint step {step} does not fit the store's 64-bit integer: use a step from "
                         f"{STEP_RANGE[0]} to {STEP_RANGE[1]}")


def normalised_spec(spec: str) -> str:
    """A KIND:PATH dataset spec with its kind in lower case (the loader reads `JSONL:x` as `jsonl:x`), so both
    spellings are one task and one run; a lower-case spec is returned as it is."""
    kind, separator, path = spec.partition(":")
    return f"{kind.lower()}{separator}{path}" if separator and _KIND.fullmatch(kind) else spec


def check_model_path(model: str) -> None:
    """Refuse, before any dataset is read, a model spelt as a path (/, ., ~) that is no folder here: such a name is
    never a hub id either, so loading it can only fail."""
    if model.startswith(PATH_STARTS) and not _is_folder(Path(model).expanduser()):
        from pidcore.models.loading import ModelLoadError  # here: the dashboard imports this module, not transformers

        raise ModelLoadError(f"cannot load model {model!r}: it is spelt as a path, and no such folder is here")


def default_checkpoint(model: str, step: int | None) -> str:
    """The checkpoint name of a `profile` without --checkpoint: "final", except for a local folder whose name ends
    in the --checkpoint-step's number (runs/llava-x/step-100 at step 100, checkpoint-500, global_step5000): its own
    name, so the folder above names the model and a model's checkpoint folders make one trajectory (a final-weights
    folder such as runs/llava-x, or llava-1.5-7b at step 7, stays "final")."""
    folder = Path(model).expanduser()
    if step is None or not _is_folder(folder):
        return "final"
    name = folder.resolve().name
    ending = re.search(r"(\d+)$", name)
    return name if ending is not None and int(ending.group(1)) == step else "final"


def _is_folder(path: Path) -> bool:
    """Whether a path is a folder here; a name the system cannot hold as a path (too long) is not one."""
    try:
        return path.is_dir()
    except OSError:
        return False


@dataclass
class ProfileSettings:
    """Everything a profile run depends on; the run id hashes the fields that change its rows (the model's and the
    dataset's identities once resolved, task, checkpoint, step, stage and the probing settings), and the estimator
    name (`estimator`) the conventions that change its atoms.

    name: the model's name on the pages (default: a local folder's name, the folder above's when the folder is
      named like the checkpoint, so `ckpt/stage2-step5000` with --checkpoint stage2-step5000 is model "ckpt"; a hub
      id whole, so teamA/vlm-7b and teamB/vlm-7b stay apart).
    family: the family shown on the pages (default: the adapter's, the config's model type).
    revision: the hub revision (branch, tag or commit) to load.
    spread: load the model across every visible GPU (device_map="auto"), for a model too big for one.
    model_identity / dataset_identity: what the model and dataset resolved to (pipeline.identity fills them): a
      canonical path or hub id and commit with a weights fingerprint; a digest of the samples loaded.
    dedupe: what a repeated sample id does: "error" (default) or "first" (keep the first row of each id).
    probes: the probe conventions, "published" (the paper's stages 1-2: its own scripts' conventions for the
      families it published scripts for, Qwen2-VL, Qwen2.5-VL, InstructBLIP and Llama 3.2 Vision, otherwise span,
      statistics and draws) or "clean" (ours); see pidcore.probes.conventions.
    image_dir: the folder that path images of the dataset are read from (default: the dataset file's folder).

    estimator_mode: a preset of estimators.batch_config.PRESETS ("published" reproduces the paper's stage 3).
    letter_mass_fallback: replace a probe whose vocabulary mass on the option letters is below
      LETTER_MASS_FALLBACK by the uniform distribution, per probe and per layer, as published (None: the mode's
      default, on for "published", off for "calibrated").
    fallback_upstream: the probabilities were stored after the fallback (the paper's stage-2 files), so it is
      not applied again.
    repeats: refit on this many seeded fit/evaluation splits and report the spread of the atoms.
    bootstrap: resamples behind each atom's 95% interval (None: the preset's, 100; 0: no interval).
    keep_fitted: store each layer's fitted estimator (about 50 kB), needed to score new samples later.
    progress: show tqdm bars (off when a caller shows its own).
    hidden_states: also keep each sample's hidden-state features per layer (pidcore.probes.hidden) and estimate the
      Gaussian PID on them per layer, stored as estimator `gaussian` beside BATCH's rows of the same run; adding
      them to a stored run probes its samples again for them and changes none of its rows.
    components: the PCA dimension per source of the Gaussian PID (at most; pidcore.estimators.reduction).
    gaussianise: map each reduced coordinate to normal quantiles by its rank on the fitting split first.
    """

    model: str
    dataset: str
    db: str
    layers: str = "all"
    device: str = "auto"
    dtype: str = "auto"
    limit: int | None = None
    seed: int = 0
    estimator_mode: str = "published"
    checkpoint: str = "final"
    step: int | None = None
    stage: str | None = None
    calibration_samples: int = 32
    chunk: int = 8
    trust_remote_code: bool = False
    task: str | None = None
    letter_mass_fallback: bool | None = None
    fallback_upstream: bool = False
    repeats: int = 1
    bootstrap: int | None = None
    keep_fitted: bool = True
    progress: bool = True
    name: str | None = None
    revision: str | None = None
    model_identity: str | None = None
    dataset_identity: str | None = None
    dedupe: str = "error"
    family: str | None = None
    spread: bool = False
    probes: str = PUBLISHED
    image_dir: str | None = None
    hidden_states: bool = False
    components: int = GAUSSIAN_COMPONENTS
    gaussianise: bool = True

    def check(self) -> None:
        """The checks that need neither the dataset nor the model, so a bad option fails in a second: the checkpoint
        step fits the store, the device is one torch knows and this machine has."""
        from pidcore.devices import resolve_device  # here: the dashboard imports this module, not torch

        check_step(self.step)
        resolve_device(self.device)
        if self.components < 1:
            raise ValueError(f"components must be at least 1, got {self.components}")

    def run_id(self) -> str:
        """A digest of everything that changes the run's rows; an unresolved model or dataset counts as spelt."""
        identity = {"model": self.model_identity or self.model,
                    "dataset": self.dataset_identity or normalised_spec(self.dataset),
                    "task": self.task_name, **{key: getattr(self, key) for key in RUN_KEYS}}
        if self.probes != CLEAN and not self.dataset.startswith(IMPORTED_PREFIX):
            identity["probes"] = self.probes
        canonical = json.dumps(identity, sort_keys=True, default=str)
        return hashlib.sha1(canonical.encode()).hexdigest()[:16]

    @property
    def fallback(self) -> bool:
        """Whether the letter-mass fallback applies (the mode's default unless set)."""
        return self.estimator_mode == "published" if self.letter_mass_fallback is None else self.letter_mass_fallback

    @property
    def estimator(self) -> str:
        return estimator_name(self.estimator_mode, self.fallback)

    @property
    def gaussian_estimator(self) -> str:
        return gaussian_estimator_name(self.components, self.gaussianise)

    @property
    def task_name(self) -> str:
        """The task as shown in the store: the explicit name, else KIND:FILENAME of the dataset spec."""
        kind, _, path = normalised_spec(self.dataset).partition(":")
        return self.task or f"{kind}:{Path(path).name}"

    @property
    def model_name(self) -> str:
        """The model as shown in the store: `name`, else a local folder's name (or one spelt as a path: the one above
        when the last is the checkpoint's name), else the hub id or name whole, so teamA/vlm-7b and teamB/vlm-7b
        stay two models."""
        if self.name:
            return self.name
        folder = Path(self.model).expanduser()
        if _is_folder(folder):
            parts = folder.resolve().parts
        elif self.model.startswith(PATH_STARTS):
            parts = Path(self.model).parts
        else:
            return self.model
        if len(parts) > 1 and parts[-1] == self.checkpoint:
            return parts[-2]
        return parts[-1] if parts else self.model
