"""The demo build's summary, read back from the database: accuracy, estimated vs exact atoms, and the patterns."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pidcore.analysis.families import BATCH, GAUSSIAN, agreements, estimator_family
from pidcore.analysis.flags import is_untrained
from pidcore.analysis.phases import PHASE_RULE, detect_phases
from pidcore.analysis.regimes import final_rows
from pidcore.analysis.stages import STAGE2_RULE, is_stage2_rise, stage2_rise
from pidcore.atoms import ATOMS, GAUSSIAN_ESTIMATOR, LETTER_MASS_FALLBACK
from pidcore.pipeline.settings import DEFAULT_ESTIMATOR, estimator_name, probe_label
from pidcore.store import read_atoms, read_diagnostics, read_run_settings, read_task_pid


def summarise(db: str | Path) -> str:
    """A Markdown report of a demo database (the default estimator's atoms, and what the fallback changes)."""
    every = read_atoms(db)
    atoms = every[every["estimator"] == DEFAULT_ESTIMATOR]
    exact = read_task_pid(db).set_index("task")
    probes = sorted({probe_label(stored) for stored in read_run_settings(db).values()})
    lines = ["# Demo build summary", "", f"Probe conventions of every run: {', '.join(probes)} (the README's \"The "
             "paper's stages 1-2\" says what each changes).", "", "Exact PID of each task's generator (bits):", "",
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
    lines += ["", _fallback_section(every)]
    lines += ["", _families_section(every), "", _untrained_line(db)]
    return "\n".join(lines) + "\n"


def _families_section(every: pd.DataFrame) -> str:
    """The two estimator families on the final checkpoints: the correlation of their S and U2 curves over the
    layers, and the language-unique share U2 / I(X1,X2;Y) each reads at the output layer."""
    rows = ["The two estimator families (final checkpoint; " + DEFAULT_ESTIMATOR + " against the Gaussian PID on "
            "the hidden states, `" + GAUSSIAN_ESTIMATOR + "`): Pearson's r of their curves over the layers, and the "
            "language-unique share each reads at the output layer.", "",
            "| model | task | r(S) | r(U2) | U2 share, BATCH | U2 share, Gaussian |", "|---|---|---|---|---|---|"]
    for found in agreements(every[every["estimator"].isin([DEFAULT_ESTIMATOR, GAUSSIAN_ESTIMATOR])]):
        pearson = [f"{found.pearson[atom]:+.2f}" if found.pearson[atom] is not None else "n/a" for atom in ("s", "u2")]
        shares = [f"{found.u2_share[family]:.0%}" if found.u2_share[family] is not None else "n/a"
                  for family in (BATCH, GAUSSIAN)]
        rows.append(f"| {found.model} | {found.task} | {' | '.join(pearson)} | {' | '.join(shares)} |")
    return "\n".join(rows)


def _fallback_section(every: pd.DataFrame) -> str:
    """The final checkpoints' layer phases with and without the letter-mass fallback."""
    without = estimator_name("published", False)
    rows = ["Letter-mass fallback (final checkpoint, " + DEFAULT_ESTIMATOR + " against " + without + "): the silent "
            "phase and the atoms at layer 1, where the fallback replaced the probes whose letter mass was under "
            f"{LETTER_MASS_FALLBACK}.", "",
            "| model | task | silent with | silent without | S at layer 1 with -> without "
            "| U2 at layer 1 with -> without |",
            "|---|---|---|---|---|---|"]
    silent_with = silent_without = 0
    for (model, task), rows_of in every.groupby(["model", "task"]):
        final = rows_of[rows_of["step"] == rows_of["step"].max()]
        curves = {name: final[final["estimator"] == name].sort_values("layer") for name in (DEFAULT_ESTIMATOR, without)}
        if any(len(curve) < 3 for curve in curves.values()):
            continue
        phases = {name: detect_phases(curve) for name, curve in curves.items()}
        first = {name: curve[curve["layer"] == 1].iloc[0] for name, curve in curves.items()}
        silent_with += phases[DEFAULT_ESTIMATOR].silent is not None
        silent_without += phases[without].silent is not None
        rows.append(f"| {model} | {task} | {_span(phases[DEFAULT_ESTIMATOR].silent)} | {_span(phases[without].silent)} "
                    f"| {first[DEFAULT_ESTIMATOR]['s']:+.3f} -> {first[without]['s']:+.3f} "
                    f"| {first[DEFAULT_ESTIMATOR]['u2']:+.3f} -> {first[without]['u2']:+.3f} |")
    rows += ["", f"A silent phase past the embeddings: {silent_with} curves with the fallback, {silent_without} "
             "without."]
    return "\n".join(rows)


def _untrained_line(db: str | Path) -> str:
    """How many stored rows the flag rule calls untrained, per BATCH estimator, and how much training moved at all."""
    diagnostics = read_diagnostics(db)
    diagnostics = diagnostics[diagnostics["estimator"].map(estimator_family) == BATCH]
    diagnostics["untrained"] = [is_untrained(*values) for values in zip(
        diagnostics["initial_bits"], diagnostics["kept_bits"], diagnostics["floor_bits"])]
    diagnostics["gain"] = diagnostics["initial_bits"] - diagnostics["kept_bits"]
    lines = ["Training, as measured (the objective is the conditional term I_q(X2;Y|X1) on the monitored samples: "
             "the training split with fixed epochs, the validation part with early stopping):", "",
             "| estimator | layers | kept the initial networks | flagged untrained | largest fall of the objective "
             "(bits) | above the floor I(X2;Y) - I(X1;Y) where flagged (bits, median) |", "|---|---|---|---|---|---|"]
    for name, rows in diagnostics.groupby("estimator"):
        flagged = rows[rows["untrained"]]
        above = (flagged["initial_bits"] - flagged["floor_bits"]).median() if len(flagged) else float("nan")
        lines.append(f"| {name} | {len(rows)} | {int((rows['best_epoch'] == 0).sum())} | {len(flagged)} | "
                     f"{rows['gain'].max():.4f} | {above:.3f} |")
    return "\n".join(lines)


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
