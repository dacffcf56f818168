"""The sweep file (TOML): models and their checkpoints x datasets, with settings shared by every unit.

A unit is one (model or checkpoint, dataset). Paths in the file are relative to the file's folder, so a sweep
folder can be moved or mounted elsewhere as a whole. Every key is checked: a typo is an error naming the key and
the keys allowed there, never a silently ignored setting.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from difflib import get_close_matches
from pathlib import Path

from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

from pidcore.atoms import DEDUPE_POLICIES
from pidcore.datasets.registry import GENERATED, parse_spec
from pidcore.models.adapters import ADAPTERS, CONVERTED, UNSUPPORTED
from pidcore.pipeline.settings import ProfileSettings
from pidcore.probes.conventions import PROBE_MODES, PUBLISHED

ESTIMATOR_MODES = ("published", "calibrated")
# [settings] keys and the ProfileSettings field each one sets (the sweep spells a few of them as profile's options).
SETTING_FIELDS = {"layers": "layers", "seed": "seed", "batch_size": "chunk", "bootstrap": "bootstrap",
                  "repeats": "repeats", "device": "device", "dtype": "dtype", "fallback": "letter_mass_fallback",
                  "calibration_samples": "calibration_samples", "keep_fitted": "keep_fitted", "dedupe": "dedupe",
                  "trust_remote_code": "trust_remote_code", "probes": "probes", "hidden_states": "hidden_states",
                  "components": "components", "gaussianise": "gaussianise"}
_SETTING_TYPES = {"layers": str, "seed": int, "batch_size": int, "bootstrap": int, "repeats": int, "device": str,
                  "dtype": str, "fallback": bool, "calibration_samples": int, "keep_fitted": bool, "dedupe": str,
                  "trust_remote_code": bool, "probes": str, "hidden_states": bool, "components": int,
                  "gaussianise": bool}
_TOP_KEYS = {"db": str, "shards": str, "models": list, "datasets": list, "settings": dict}
_MODEL_KEYS = {"path": str, "name": str, "family": str, "dtype": str, "gpus": int, "revision": str,
               "trust_remote_code": bool, "model_type": str, "checkpoints": list}
_CHECKPOINT_KEYS = {"path": str, "name": str, "step": int, "stage": str}
_DATASET_KEYS = {"spec": str, "task": str, "limit": int, "image_dir": str}


class SweepFileError(ValueError):
    """The sweep file cannot be read, or a key in it is missing, unknown or of the wrong type."""


@dataclass(frozen=True)
class Unit:
    """One (model or checkpoint, dataset) of a sweep: the profile settings that run it (their `db` is the sweep's
    database), the estimator modes fitted on its probe outputs, the GPUs it asks for (None: the sweep decides), and
    the model type its [[models]] entry declares (None: not declared), which a dry run uses where no config is here."""

    settings: ProfileSettings
    modes: tuple[str, ...]
    gpus: int | None
    model_type: str | None = None

    @property
    def label(self) -> str:
        """model / checkpoint / task, as the plan and the progress name the unit."""
        return f"{self.settings.model_name} / {self.settings.checkpoint} / {self.settings.task_name}"

    @property
    def estimators(self) -> list[str]:
        """The stored estimator names this unit fills: a BATCH one per mode, and the Gaussian PID's with hidden
        states."""
        gaussian = [self.settings.gaussian_estimator] if self.settings.hidden_states else []
        return [self.for_mode(mode).estimator for mode in self.modes] + gaussian

    def for_mode(self, mode: str) -> ProfileSettings:
        """The unit's settings with this estimator mode."""
        return replace(self.settings, estimator_mode=mode)


@dataclass(frozen=True)
class Sweep:
    """A read sweep file: the database, the shard folder, and the units in order (model by model, each model's
    final weights first, then its checkpoints, every one on every dataset)."""

    path: Path
    db: Path
    shards: Path
    units: list[Unit] = field(default_factory=list)


def read_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file; any problem is a SweepFileError naming the file, the entry and the key."""
    path = Path(path).expanduser()
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SweepFileError(f"cannot read sweep file {path}: {error.strerror or error}") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise SweepFileError(f"sweep file {path} is not valid TOML: {error}") from error
    where = str(path)
    _check_keys(document, _TOP_KEYS, where, required=("db", "models", "datasets"))
    folder = path.resolve().parent
    db = _relative(folder, document["db"])
    shards = _relative(folder, document["shards"]) if "shards" in document else db.with_name(f"{db.name}.shards")
    base, modes = _base_settings(document.get("settings", {}), db, f"{where} [settings]")
    datasets = [_dataset(entry, folder, f"{where} [[datasets]] #{index + 1}")
                for index, entry in enumerate(_entries(document["datasets"], f"{where} datasets"))]
    units = []
    for index, entry in enumerate(_entries(document["models"], f"{where} models")):
        for model in _model_and_checkpoints(entry, folder, base, f"{where} [[models]] #{index + 1}"):
            units += [Unit(replace(model, **dataset), modes, entry.get("gpus"), entry.get("model_type"))
                      for dataset in datasets]
    _check_unique(units, where)
    return Sweep(path, db, shards, units)


def _entries(value: list, where: str) -> list[dict]:
    """An array of tables, at least one."""
    if not value or not all(isinstance(entry, dict) for entry in value):
        raise SweepFileError(f"{where}: expected one or more [[tables]], got {value!r}")
    return value


def _check_keys(table: dict, allowed: dict[str, type], where: str, required: tuple[str, ...] = ()) -> None:
    """Unknown keys, missing required keys and values of the wrong type are errors."""
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise SweepFileError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")
    missing = [key for key in required if key not in table]
    if missing:
        raise SweepFileError(f"{where}: missing key(s) {', '.join(missing)}")
    for key, value in table.items():
        kind = allowed[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SweepFileError(f"{where}: {key} must be {kind.__name__}, got {value!r}")


def _relative(folder: Path, value: str) -> Path:
    """A path from the sweep file, relative to the file's folder unless absolute."""
    return folder / Path(value).expanduser()


def _base_settings(table: dict, db: Path, where: str) -> tuple[ProfileSettings, tuple[str, ...]]:
    """The settings every unit shares, and the estimator modes (one or a list) fitted per unit."""
    allowed = {**_SETTING_TYPES, "estimator": object}
    _check_keys(table, allowed, where)
    modes = table.get("estimator", "published")
    modes = tuple([modes] if isinstance(modes, str) else modes) if isinstance(modes, (str, list)) else ()
    if not modes or any(mode not in ESTIMATOR_MODES for mode in modes) or len(set(modes)) < len(modes):
        raise SweepFileError(f"{where}: estimator must be one of {', '.join(ESTIMATOR_MODES)} or a list of them "
                             f"without repeats, got {table.get('estimator')!r}")
    if table.get("dedupe", "error") not in DEDUPE_POLICIES:
        raise SweepFileError(f"{where}: dedupe must be one of {', '.join(DEDUPE_POLICIES)}")
    if table.get("probes", PUBLISHED) not in PROBE_MODES:
        raise SweepFileError(f"{where}: probes must be one of {', '.join(PROBE_MODES)}, got {table['probes']!r}")
    for key in ("batch_size", "repeats", "calibration_samples", "components"):
        if table.get(key, 1) < 1:
            raise SweepFileError(f"{where}: {key} must be at least 1, got {table[key]}")
    if table.get("bootstrap", 0) < 0:
        raise SweepFileError(f"{where}: bootstrap must not be negative, got {table['bootstrap']}")
    fields_ = {SETTING_FIELDS[key]: value for key, value in table.items() if key in SETTING_FIELDS}
    return ProfileSettings(model="", dataset="", db=str(db), estimator_mode=modes[0], progress=False,
                           **fields_), modes


def _dataset(entry: dict, folder: Path, where: str) -> dict:
    """The ProfileSettings fields a [[datasets]] entry sets: the spec (a file's path made absolute), task, limit and
    the folder its image paths are relative to."""
    _check_keys(entry, _DATASET_KEYS, where, required=("spec", "task"))
    try:
        kind, path = parse_spec(entry["spec"])
    except ValueError as error:
        raise SweepFileError(f"{where}: {error}") from error
    if entry.get("limit", 1) < 1:
        raise SweepFileError(f"{where}: limit must be at least 1, got {entry['limit']}")
    spec = entry["spec"] if kind in GENERATED else f"{kind}:{_relative(folder, str(path))}"
    image_dir = str(_relative(folder, entry["image_dir"])) if "image_dir" in entry else None
    return {"dataset": spec, "task": entry["task"], "limit": entry.get("limit"), "image_dir": image_dir}


def _model_and_checkpoints(entry: dict, folder: Path, base: ProfileSettings, where: str) -> list[ProfileSettings]:
    """A [[models]] entry's final weights (checkpoint "final") and each of its [[models.checkpoints]], all under
    the model's name so the pages draw them as one model's training."""
    _check_keys(entry, _MODEL_KEYS, where, required=("path",))
    if entry.get("gpus", 0) < 0:
        raise SweepFileError(f"{where}: gpus must not be negative, got {entry['gpus']}")
    if "model_type" in entry:
        _check_model_type(entry["model_type"], where)
    model = replace(base, model=_model_path(folder, entry["path"]), family=entry.get("family"),
                    revision=entry.get("revision"), dtype=entry.get("dtype", base.dtype),
                    trust_remote_code=entry.get("trust_remote_code", base.trust_remote_code),
                    spread=entry.get("gpus", 0) > 1)
    model = replace(model, name=entry.get("name") or model.model_name)
    checkpoints = _entries(entry["checkpoints"], f"{where} checkpoints") if "checkpoints" in entry else []
    return [model, *(_checkpoint(model, checkpoint, folder, f"{where} checkpoints #{index + 1}")
                     for index, checkpoint in enumerate(checkpoints))]


def _check_model_type(value: str, where: str) -> None:
    """A declared model type must be one transformers knows or pidcore.models.adapters names, so a typo is not
    reported later as an unsupported family."""
    known = set(CONFIG_MAPPING_NAMES) | set(ADAPTERS) | set(UNSUPPORTED) | set(CONVERTED)
    if value not in known:
        close = get_close_matches(value, sorted(known), n=3)
        raise SweepFileError(f"{where}: model_type {value!r} is neither a transformers model type nor one "
                             f"pidcore.models.adapters names (its config's \"model_type\")"
                             + (f"; did you mean {' or '.join(close)}?" if close else ""))


def _checkpoint(model: ProfileSettings, entry: dict, folder: Path, where: str) -> ProfileSettings:
    _check_keys(entry, _CHECKPOINT_KEYS, where, required=("path",))
    path = _model_path(folder, entry["path"])
    name = entry.get("name") or Path(path).name
    if name == "final":
        raise SweepFileError(f"{where}: checkpoint name 'final' is the model's own path; name the checkpoint")
    return replace(model, model=path, checkpoint=name, step=entry.get("step"), stage=entry.get("stage"),
                   revision=None)


def _model_path(folder: Path, value: str) -> str:
    """A model folder relative to the sweep file (when it exists there, or is spelt as a path), else a hub id."""
    local = folder / Path(value).expanduser()
    if local.is_dir() or value.startswith((".", "/", "~")):
        return str(local.resolve())
    return value


def _check_unique(units: list[Unit], where: str) -> None:
    """Two units under one model / checkpoint / task would overwrite each other on the pages: an error."""
    seen: dict[str, int] = {}
    for unit in units:
        seen[unit.label] = seen.get(unit.label, 0) + 1
    repeated = [label for label, count in seen.items() if count > 1]
    if repeated:
        raise SweepFileError(f"{where}: these units appear more than once (give models, checkpoints or tasks "
                             f"distinct names): {'; '.join(repeated)}")
