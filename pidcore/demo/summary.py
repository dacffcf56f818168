"""The demo build's summary, read back from the database: accuracy, estimated vs exact atoms, and the patterns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pidcore.analysis.phases import PHASE_RULE, detect_phases
from pidcore.analysis.regimes import final_rows
from pidcore.analysis.stages import STAGE2_RULE, is_stage2_rise, stage2_rise
from pidcore.atoms import ATOMS
from pidcore.store import read_atoms, read_task_pid


def summarise(db: str | Path) -> str:
    """A Markdown report of a demo database."""
    atoms = read_atoms(db)
    exact = read_task_pid(db).set_index("task")
    lines = ["# Demo build summary", "", "Exact PID of each task's generator (bits):", "",
             "| task | planted | R | U1 | U2 | S |", "|---|---|---|---|---|---|"]
    for task, row in exact.iterrows():
        values = " | ".join(f"{round(row[a], 3) + 0.0:.3f}" for a in ATOMS)
        lines.append(f"| {task} | {row['planted'].upper()} | {values} |")
    lines += ["", "Final checkpoint, output layer: accuracy, estimated atoms beside the generator's exact atoms "
              "(bits), and whether the planted atom is the largest estimated one:", "",
              "| model | family | task | accuracy | R | U1 | U2 | S | exact R / U1 / U2 / S | planted largest |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for _, row in final_rows(atoms).sort_values(["model", "task"]).iterrows():
        lines.append(_final_line(row, exact.loc[row["task"]] if row["task"] in exact.index else None))
    lines += ["", "Patterns, as measured. " + PHASE_RULE + " " + STAGE2_RULE, "",
              "| model | family | task | silent | language build-up | fusion | three-phase | S end of stage 1 -> "
              "final | stage-2 rise |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [_pattern_line(atoms, model, task) for model, task in
              atoms[["model", "task"]].drop_duplicates().sort_values(["model", "task"]).itertuples(index=False)]
    lines += ["", "Per family:", ""] + _family_lines(atoms)
    return "\n".join(lines) + "\n"


def _final_line(row: pd.Series, exact: pd.Series | None) -> str:
    largest = max(ATOMS, key=lambda atom: row[atom])
    if exact is None:
        reference, verdict = "n/a", "n/a"
    else:
        reference = " / ".join(f"{round(exact[a], 3) + 0.0:.3f}" for a in ATOMS)
        verdict = "yes" if largest == exact["planted"] else f"no ({largest.upper()})"
    estimated = " | ".join(f"{row[a]:+.3f}" for a in ATOMS)
    return (f"| {row['model']} | {row['family']} | {row['task']} | {row['accuracy']:.3f} | {estimated} | "
            f"{reference} | {verdict} |")


def _pattern_line(atoms: pd.DataFrame, model: str, task: str) -> str:
    rows = atoms[(atoms["model"] == model) & (atoms["task"] == task)]
    final = rows[rows["step"] == rows["step"].max()]
    phases = detect_phases(final)
    outputs = rows[rows["layer"] == rows["n_layers"]]
    rise = stage2_rise(outputs)
    stage1 = outputs[outputs["stage"] == "1"].sort_values("step")
    start = f"{stage1.iloc[-1]['s']:.3f}" if not stage1.empty else "n/a"
    end = outputs.sort_values("step").iloc[-1]["s"]
    return (f"| {model} | {rows['family'].iloc[0]} | {task} | {_span(phases.silent)} | {_span(phases.language)} | "
            f"{_span(phases.fusion)} | {'yes' if phases.three_phase else 'no'} | {start} -> {end:.3f} | "
            f"{'n/a' if rise is None else ('yes' if is_stage2_rise(rise) else 'no')} |")


def _family_lines(atoms: pd.DataFrame) -> list[str]:
    lines = []
    for family, rows in atoms.groupby("family"):
        curves = rows[["model", "task"]].drop_duplicates().itertuples(index=False)
        three = rises = total = 0
        for model, task in curves:
            one = rows[(rows["model"] == model) & (rows["task"] == task)]
            three += detect_phases(one[one["step"] == one["step"].max()]).three_phase
            rise = stage2_rise(one[one["layer"] == one["n_layers"]])
            rises += is_stage2_rise(rise)
            total += 1
        lines.append(f"- {family}: three-phase layer pattern in {three} of {total} model x task curves; "
                     f"stage-2 rise in S in {rises} of {total}.")
    return lines


def _span(span: tuple[int, int] | None) -> str:
    return "-" if span is None else f"{span[0]}-{span[1]}"
