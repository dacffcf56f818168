"""The results database's tables and its public `atoms` view, each column list named once, and the record types
that cross the store's boundary."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pidcore.atoms import ATOMS, BOUND_COLUMNS, Atoms

ATOM_DOUBLES = tuple((name, "DOUBLE") for name in ATOMS)
BOUND_DOUBLES = tuple((name, "DOUBLE") for name in BOUND_COLUMNS)


@dataclass(frozen=True)
class Table:
    """A table's name, its (column, type) pairs in order, and its primary key."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def create_sql(self) -> str:
        columns = ", ".join(f"{name} {kind}" for name, kind in self.columns)
        return f"CREATE TABLE IF NOT EXISTS {self.name} ({columns}, PRIMARY KEY ({', '.join(self.key)}))"


RUNS = Table("runs", (("run_id", "VARCHAR"), ("model", "VARCHAR"), ("family", "VARCHAR"), ("task", "VARCHAR"),
                      ("checkpoint", "VARCHAR"), ("step", "BIGINT"), ("stage", "VARCHAR"), ("n_layers", "INTEGER"),
                      ("settings", "VARCHAR"), ("created", "DOUBLE")), ("run_id",))
CALIBRATION = Table("calibration", (("run_id", "VARCHAR"), ("stats", "BLOB")), ("run_id",))
SAMPLES = Table("samples", (("run_id", "VARCHAR"), ("sample_id", "VARCHAR"), ("position", "INTEGER"),
                            ("gold", "INTEGER"), ("n_options", "INTEGER"), ("x1", "BLOB"), ("x2", "BLOB"),
                            ("probs", "BLOB"), ("letter_mass", "BLOB"), ("split", "VARCHAR"), ("question", "VARCHAR"),
                            ("options", "VARCHAR"), ("image", "BLOB")), ("run_id", "sample_id"))
# A sample's `options` are a JSON list of its option strings, and its `image` the PNG of its image up to this size;
# a larger image is NULL, so a few huge images cannot swell the file.
MAX_STORED_IMAGE_BYTES = 1 << 20
LAYER_ATOMS = Table("layer_atoms", (("run_id", "VARCHAR"), ("layer", "INTEGER"), ("estimator", "VARCHAR"),
                                    *ATOM_DOUBLES, *BOUND_DOUBLES, ("n_samples", "INTEGER"), ("accuracy", "DOUBLE"),
                                    ("diagnostics", "VARCHAR"), ("fitted", "BLOB")), ("run_id", "layer", "estimator"))
POINTWISE_ATOMS = Table("pointwise_atoms", (("run_id", "VARCHAR"), ("layer", "INTEGER"), ("estimator", "VARCHAR"),
                                            ("sample_id", "VARCHAR"), *ATOM_DOUBLES),
                        ("run_id", "layer", "estimator", "sample_id"))
TASK_PID = Table("task_pid", (("task", "VARCHAR"), *ATOM_DOUBLES, ("planted", "VARCHAR")), ("task",))
# A sample's hidden-state features, kept where `profile --hidden-states` asked for them: [source, stored layer,
# feature] float32, source 0 the image tokens' mean and 1 the question tokens' (pidcore.probes.hidden).
HIDDEN_STATES = Table("hidden_states", (("run_id", "VARCHAR"), ("sample_id", "VARCHAR"), ("features", "BLOB")),
                      ("run_id", "sample_id"))
TABLES = (RUNS, CALIBRATION, SAMPLES, LAYER_ATOMS, POINTWISE_ATOMS, TASK_PID, HIDDEN_STATES)

# A published model's output row whose depth the source does not give is stored at this layer (the key cannot be
# NULL) and shown as NULL layer and n_layers: "the output, depth unknown".
UNKNOWN_DEPTH_LAYER = -1
LAYER_SQL = f"NULLIF(layer_atoms.layer, {UNKNOWN_DEPTH_LAYER}) AS layer"

# The public view: one row per (model, task, checkpoint, layer, estimator); DESIGN.md section 3 fixes its columns.
ATOMS_VIEW = "atoms"
ATOM_COLUMNS = ["model", "family", "task", "checkpoint", "step", "stage", "layer", "n_layers", "estimator", *ATOMS,
                *BOUND_COLUMNS, "n_samples", "accuracy"]
_FROM_RUNS = {"model", "family", "task", "checkpoint", "step", "stage", "n_layers"}
_VIEW_SELECT = ", ".join(LAYER_SQL if column == "layer" else
                         f"{'runs' if column in _FROM_RUNS else 'layer_atoms'}.{column}" for column in ATOM_COLUMNS)
# The run each (model, task, checkpoint) shows: the newest registered. A rerun with other inputs or settings is a
# new run under the same names; the older one stays in the store, out of the view.
CURRENT_RUNS_SQL = ("(SELECT * FROM runs QUALIFY row_number() OVER (PARTITION BY model, task, checkpoint "
                    "ORDER BY created DESC, run_id DESC) = 1)")
ATOMS_VIEW_SQL = (f"CREATE OR REPLACE VIEW {ATOMS_VIEW} AS SELECT {_VIEW_SELECT} "
                  f"FROM layer_atoms JOIN {CURRENT_RUNS_SQL} AS runs USING (run_id)")
OBJECTS = {table.name for table in TABLES} | {ATOMS_VIEW}
# Each column of the view with the type its table gives it, so a reader can tell a crafted view's other types.
ATOM_COLUMN_TYPES = {column: dict((RUNS if column in _FROM_RUNS else LAYER_ATOMS).columns)[column]
                     for column in ATOM_COLUMNS}


def schema_changes(present: dict[str, set[str]]) -> list[str]:
    """The statements that bring a database with these tables and columns ({table: columns}) to this schema:
    missing tables created, columns added since a database was made added (NULL in old rows), the view renewed
    (always: its definition may have changed without its columns)."""
    statements = []
    for table in TABLES:
        if table.name not in present:
            statements.append(table.create_sql())
            continue
        statements += [f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}" for name, kind in table.columns
                       if name not in present[table.name]]
    return [*statements, ATOMS_VIEW_SQL]


@dataclass
class SampleRow:
    """One probed sample of a run: features, letter distributions [pass, stored layers, k], the mass the full
    vocabulary puts on the letters [pass, stored layers] (or [pass] in databases written before), the split
    it belongs to when the run fixes one ("fit" or "evaluation"; None: the estimator splits), and what it showed:
    question, option strings and PNG image (None where not stored: an import, an older database, an image over
    MAX_STORED_IMAGE_BYTES)."""

    run_id: str
    sample_id: str
    position: int
    gold: int | None
    x1: np.ndarray
    x2: np.ndarray
    probs: np.ndarray
    letter_mass: np.ndarray
    split: str | None = None
    question: str | None = None
    options: list[str] | None = None
    image: bytes | None = None

    @property
    def n_options(self) -> int:
        return int(self.probs.shape[-1])


@dataclass(frozen=True)
class SampleText:
    """What one stored sample showed, to attach to its row: question, option strings, PNG image (or None)."""

    sample_id: str
    question: str
    options: list[str]
    image: bytes | None


@dataclass
class LayerResult:
    """One layer's dataset atoms, the accuracy of the full pass (None without gold answers) and the diagnostics."""

    layer: int
    atoms: Atoms
    accuracy: float | None
    diagnostics: dict


@dataclass
class RunProgress:
    """How far a run got in one database: its depth, the samples stored, and the layers stored per estimator."""

    n_layers: int
    samples: int
    layers: dict[str, set[int]]
