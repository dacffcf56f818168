"""The breadth, depth and time findings of one estimator's rows, by the same rules the pages apply, as plain data
(`python -m pidcore findings`, for a paper appendix or a CI check). The JSON keys are a public contract:

- tasks: {TASK: {regime, rho: {s, u2, i12, coinfo}, p: {...}, n_models, steiger_p, why}}
- families: {FAMILY: {strategy, median_s, median_u2, n_models, tasks, why}}
- curves: [{model, task, checkpoint, phases: {silent, language, fusion: [first, last] | null}, three_phase}]
- training: [{model, task, stage2_rise_s, rise}]
- cautions: [{model, task, checkpoint, kind, detail, layers}]: where the measurement cannot say much, by
  pidcore.analysis.cautions.CAUTION_RULES; `kind` is the rule's name (constant-input, uniform-probe, fallback,
  noise-floor), `layers` the layers where it fires (empty for a rule on the run's inputs, which holds at every
  layer), `detail` says it at the deepest of them
- estimator_families (only where `findings` is given the rows of every estimator, `every`): [{model, task,
  checkpoint, batch, gaussian, layers, output_layer, pearson: {s, u2}, pearson_why: {s, u2}, u2_share: {batch,
  gaussian}, u2_share_why: {batch, gaussian}, text}]: how a BATCH and a Gaussian estimator of one run agree
  (pidcore.analysis.families: Pearson's r of their S and U2 curves over the common layers, the language-unique share
  at the output layer, None with the reason in *_why). Unlike the other keys it is not of one estimator's rows, and
  it is not `families`, which are the model families' strategies.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

import pandas as pd

from pidcore.analysis.cautions import CAUTION_RULES, Caution, as_records
from pidcore.analysis.families import FAMILIES_RULE, agreements
from pidcore.analysis.phases import PHASE_RULE, detect_phases
from pidcore.analysis.regimes import REGIME_RULE, family_strategies, final_rows, is_output, task_regimes
from pidcore.analysis.stages import STAGE2_RULE, is_stage2_rise, stage2_rise, training_checkpoints

MIN_CURVE_LAYERS = 3  # a layer curve needs this many layers for its phases to mean anything
RULES = {"regimes and strategies": REGIME_RULE, "phases": PHASE_RULE, "stage-2 rise": STAGE2_RULE,
         "cautions": CAUTION_RULES}


def findings(atoms: pd.DataFrame, cautions: list[Caution] | None = None,
             every: pd.DataFrame | None = None) -> dict[str, Any]:
    """Every finding the rules give on rows of the `atoms` view of one estimator, with the cautions on them
    (pidcore.analysis.cautions, judged on what the store holds of their runs; none given: none listed), and, given
    the rows of every estimator (`every`), how the estimator families agree on each run (estimator_families)."""
    final = final_rows(atoms)
    regimes = task_regimes(final)
    found = {"tasks": {task: asdict(regime) for task, regime in regimes.items()},
             "families": {family: asdict(strategy) for family, strategy in family_strategies(final, regimes).items()},
             "curves": curve_findings(atoms), "training": training_findings(atoms),
             "cautions": as_records(cautions or [])}
    if every is not None:
        found["estimator_families"] = families_findings(every)
    return found


def families_findings(every: pd.DataFrame) -> list[dict]:
    """How a BATCH and a Gaussian estimator agree on each run that has both (pidcore.analysis.families), from rows
    of the `atoms` view of every estimator."""
    return [agreement.as_record() for agreement in agreements(every)]


def curve_findings(atoms: pd.DataFrame) -> list[dict]:
    """The phases of every (model, task, checkpoint) layer curve with at least MIN_CURVE_LAYERS layers."""
    found = []
    curves = atoms.dropna(subset=["layer"]).groupby(["model", "task", "checkpoint"], sort=True)
    for (model, task, checkpoint), curve in curves:
        if curve["layer"].nunique() < MIN_CURVE_LAYERS:
            continue
        phases = detect_phases(curve)
        spans = {"silent": phases.silent, "language": phases.language, "fusion": phases.fusion}
        found.append({"model": model, "task": task, "checkpoint": checkpoint,
                      "phases": {name: None if span is None else list(span) for name, span in spans.items()},
                      "three_phase": phases.three_phase})
    return found


def training_findings(atoms: pd.DataFrame) -> list[dict]:
    """The stage-2 rise in S of every (model, task) with checkpoints of both stages at its output layer."""
    found = []
    outputs = atoms[is_output(atoms)]
    for (model, task), rows in training_checkpoints(outputs).groupby(["model", "task"], sort=True):
        rise = stage2_rise(rows)
        if rise is not None:
            found.append({"model": model, "task": task, "stage2_rise_s": rise, "rise": is_stage2_rise(rise)})
    return found


def headline(found: dict[str, Any]) -> dict[str, str]:
    """One sentence per kind of finding (tasks, families, layers, training), for a page that leads with them; a kind
    with no finding is left out."""
    sentences = {}
    if found["tasks"]:
        sentences["tasks"] = "Tasks: " + _grouped({task: row["regime"] for task, row in found["tasks"].items()})
    if found["families"]:
        strategies = {family: row["strategy"] for family, row in found["families"].items()}
        sentences["families"] = "Model families: " + _grouped(strategies)
    if found["curves"]:
        three = [_curve_name(curve) for curve in found["curves"] if curve["three_phase"]]
        sentences["layers"] = (f"Layers: {len(three)} of {len(found['curves'])} layer curves show the three-phase "
                               f"pattern (silent, then language build-up, then fusion)"
                               + (f": {', '.join(three)}." if three else "."))
    if found["training"]:
        rises = [f"{row['model']} on {row['task']}" for row in found["training"] if row["rise"]]
        sentences["training"] = (f"Training: S rises in stage 2 in {len(rises)} of {len(found['training'])} "
                                 f"trajectories" + (f" ({', '.join(rises)})." if rises else "."))
    return sentences


def _curve_name(curve: dict) -> str:
    """'model on task', and the checkpoint where it is not the final one."""
    at = "" if curve["checkpoint"] == "final" else f" at {curve['checkpoint']}"
    return f"{curve['model']} on {curve['task']}{at}"


def _grouped(labels: dict[str, str]) -> str:
    """'a, b: x; c: y.' for the names of each label, the most common label first."""
    groups: dict[str, list[str]] = {}
    for name, label in labels.items():
        groups.setdefault(label, []).append(name)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return "; ".join(f"{label} {', '.join(names)}" for label, names in ordered) + "."


def as_json(found: dict[str, Any]) -> str:
    """The findings as JSON, NaN written as null."""
    return json.dumps(_nulls(found), indent=1, sort_keys=False)


def _nulls(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _nulls(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_nulls(item) for item in value]
    return value


def as_text(found: dict[str, Any]) -> str:
    """The findings as text tables, with the rules they follow."""
    lines = ["Tasks (across models: Spearman's rho of accuracy with S, U2, I(X1,X2;Y), R - S)",
             f"{'task':<16} {'regime':<17} {'n':>3} {'rho S':>7} {'rho U2':>7} {'rho I':>7} {'rho R-S':>8}  why"]
    for task, regime in found["tasks"].items():
        rho = regime["rho"]
        lines.append(f"{task:<16} {regime['regime']:<17} {regime['n_models']:>3} {rho['s']:>+7.3f} "
                     f"{rho['u2']:>+7.3f} {rho['i12']:>+7.3f} {rho['coinfo']:>+8.3f}  {regime['why']}")
    lines += ["", "Families (medians on the synergy-driven tasks)", f"{'family':<20} {'strategy':<17}  why"]
    lines += [f"{family:<20} {strategy['strategy']:<17}  {strategy['why']}"
              for family, strategy in found["families"].items()]
    lines += ["", "Layer curves", f"{'model':<22} {'task':<12} {'checkpoint':<16} {'silent':<8} {'language':<9} "
              f"{'fusion':<8} three-phase"]
    for curve in found["curves"]:
        spans = [_span(curve["phases"][name]) for name in ("silent", "language", "fusion")]
        lines.append(f"{curve['model']:<22} {curve['task']:<12} {curve['checkpoint']:<16} {spans[0]:<8} "
                     f"{spans[1]:<9} {spans[2]:<8} {'yes' if curve['three_phase'] else 'no'}")
    lines += ["", "Training (S from the end of stage 1 to the end of stage 2)",
              f"{'model':<22} {'task':<12} {'rise in S':>10}  stage-2 rise"]
    lines += [f"{row['model']:<22} {row['task']:<12} {row['stage2_rise_s']:>+10.3f}  {'yes' if row['rise'] else 'no'}"
              for row in found["training"]]
    lines += ["", "Cautions (where the measurement cannot say much)"]
    lines += [f"{row['kind']:<15} {row['model']} on {row['task']} ({row['checkpoint']}): {row['detail']}"
              for row in found["cautions"]] or ["none"]
    if "estimator_families" in found:
        lines += ["", "Estimator families (BATCH against the Gaussian PID on hidden states, per run)"]
        lines += [row["text"] for row in found["estimator_families"]] or ["no run has rows of both families"]
        lines.append(FAMILIES_RULE)
    lines += ["", "Rules:"] + [f"- {name}: {text}" for name, text in RULES.items()]
    return "\n".join(lines)


def _span(span: list[int] | None) -> str:
    return "-" if span is None else f"{span[0]}-{span[1]}"
