"""How the BATCH and Gaussian estimator families agree on one run (pidcore.analysis.families), on hand-built rows of
the `atoms` view: the correlation of their S and U2 curves, the language-unique share at the output layer, None with
a reason where either says nothing, and the `findings` section that lists them."""

import json

import numpy as np
import pandas as pd
import pytest

from pidcore.analysis.families import BATCH, GAUSSIAN, agreements, estimator_family, language_share
from pidcore.analysis.findings import as_json, as_text, findings
from pidcore.atoms import NOISE_FLOOR_BITS

N_LAYERS = 4
LAYERS = np.arange(N_LAYERS + 1)


def _rows(estimator: str, s, u2, r=0.1, u1=0.05, layers=LAYERS, model="m", task="t", checkpoint="final"):
    """An estimator's rows of one run, one per layer, S and U2 given per layer (R and U1 constant)."""
    count = len(layers)
    return pd.DataFrame({"model": model, "task": task, "checkpoint": checkpoint, "layer": layers,
                         "n_layers": N_LAYERS, "estimator": estimator, "r": np.broadcast_to(r, count),
                         "u1": np.broadcast_to(u1, count), "u2": np.broadcast_to(u2, count),
                         "s": np.broadcast_to(s, count), "family": "llava", "step": None, "stage": None,
                         "accuracy": 0.5})


def _agreement(*frames):
    (found,) = agreements(pd.concat(frames, ignore_index=True))
    return found


@pytest.mark.parametrize(("name", "family"), [("gaussian", GAUSSIAN), ("gaussian-pca16", GAUSSIAN),
                                              ("batch-published", BATCH), ("batch-published-nofallback", BATCH),
                                              ("paper-digitized", None), ("gaussianised", None)])
def test_an_estimator_name_says_its_family(name, family):
    assert estimator_family(name) == family


def test_curves_of_one_shape_correlate_at_1_whatever_their_scale():
    s, u2 = 0.02 * LAYERS ** 2, 0.1 * LAYERS
    found = _agreement(_rows("batch-published", s, u2), _rows("gaussian", 3 * s + 0.4, 0.5 * u2 + 0.1))
    assert found.pearson == {"s": pytest.approx(1.0), "u2": pytest.approx(1.0)}
    assert found.pearson_why == {"s": None, "u2": None} and found.layers == N_LAYERS + 1
    assert (found.batch, found.gaussian, found.output_layer) == ("batch-published", "gaussian", N_LAYERS)


def test_opposite_curves_correlate_at_minus_1():
    u2 = 0.1 * LAYERS
    found = _agreement(_rows("batch-published", 0.02 * LAYERS, u2), _rows("gaussian", 0.02 * LAYERS, 1 - u2))
    assert found.pearson["u2"] == pytest.approx(-1.0) and found.pearson["s"] == pytest.approx(1.0)


def test_a_constant_curve_has_no_correlation_and_says_why():
    found = _agreement(_rows("batch-published", 0.02 * LAYERS, 0.1 * LAYERS), _rows("gaussian", 0.01, 0.1 * LAYERS))
    assert found.pearson["s"] is None and found.pearson["u2"] == pytest.approx(1.0)
    assert found.pearson_why["s"] == "S of gaussian is constant, +0.010 bits at the 5 common layers"
    assert "of the S curves is none (S of gaussian is constant" in found.describe()


def test_the_language_unique_share_is_u2_over_the_total_at_the_output_layer():
    u2 = np.array([0.0, 0.1, 0.2, 0.3, 0.6])
    found = _agreement(_rows("batch-published", 0.02 * LAYERS, u2, r=0.1, u1=0.1),
                       _rows("gaussian", 0.02 * LAYERS, 4 * u2, r=0.0, u1=0.0))
    assert found.u2_share == {BATCH: pytest.approx(0.6 / 0.88), GAUSSIAN: pytest.approx(2.4 / 2.48)}
    assert "at the output layer 4 is 68% (batch-published) and 97% (gaussian)" in found.describe()


def test_a_share_of_a_total_below_the_noise_floor_is_none_with_the_reason():
    tiny = NOISE_FLOOR_BITS / 10
    found = _agreement(_rows("batch-published", 0.02 * LAYERS, 0.1 * LAYERS),
                       _rows("gaussian", tiny * LAYERS / N_LAYERS, 0.0 * LAYERS, r=0.0, u1=0.0))
    assert found.u2_share[GAUSSIAN] is None and found.u2_share[BATCH] is not None
    assert found.u2_share_why[GAUSSIAN] == (f"I(X1,X2;Y) is +0.005 bits at the output layer, below the noise floor "
                                            f"of {NOISE_FLOOR_BITS} bits")
    assert language_share(None, 7) == (None, "no row at the output layer 7")


def test_a_run_without_its_output_layer_in_one_family_has_no_share_there():
    found = _agreement(_rows("batch-published", 0.02 * LAYERS, 0.1 * LAYERS),
                       _rows("gaussian", [0.1, 0.2, 0.4], [0.1, 0.3, 0.2], layers=[0, 1, 2]))
    assert found.layers == 3 and found.u2_share[GAUSSIAN] is None
    assert found.u2_share_why[GAUSSIAN] == "no row at the output layer 4"


def test_a_run_of_one_family_or_with_too_few_common_layers_gives_no_entry():
    batch = _rows("batch-published", 0.02 * LAYERS, 0.1 * LAYERS)
    assert agreements(pd.concat([batch, _rows("batch-calibrated", 0.01 * LAYERS, 0.1 * LAYERS)])) == []
    assert agreements(pd.concat([batch, _rows("gaussian", [0.1, 0.2], [0.1, 0.3], layers=[3, 4])])) == []
    other_run = _rows("gaussian", 0.02 * LAYERS, 0.1 * LAYERS, model="another")
    assert agreements(pd.concat([batch, other_run, _rows("paper-digitized", 0.0, 0.0)])) == []


def test_every_batch_gaussian_pair_of_a_run_is_one_entry():
    s, u2 = 0.02 * LAYERS, 0.1 * LAYERS
    rows = pd.concat([_rows(name, s, u2) for name in ("batch-published", "batch-calibrated", "gaussian-pca16",
                                                      "gaussian-raw")])
    pairs = [(found.batch, found.gaussian) for found in agreements(rows)]
    assert pairs == [("batch-calibrated", "gaussian-pca16"), ("batch-calibrated", "gaussian-raw"),
                     ("batch-published", "gaussian-pca16"), ("batch-published", "gaussian-raw")]


def test_findings_list_the_agreements_only_when_given_every_estimators_rows():
    batch = _rows("batch-published", 0.02 * LAYERS, 0.1 * LAYERS)
    every = pd.concat([batch, _rows("gaussian", 0.0, 0.2 * LAYERS)], ignore_index=True)
    assert "estimator_families" not in findings(batch)
    found = findings(batch, every=every)
    (entry,) = json.loads(as_json(found))["estimator_families"]
    assert entry["pearson"] == {"s": None, "u2": pytest.approx(1.0)}
    assert entry["pearson_why"]["s"].startswith("S of gaussian is constant")
    assert entry["u2_share"]["batch"] == pytest.approx(0.4 / 0.63) and entry["text"].startswith("m on t (final)")
    text = as_text(found)
    assert "Estimator families (BATCH against the Gaussian PID on hidden states, per run)" in text
    assert entry["text"] in text
    assert "no run has rows of both families" in as_text(findings(batch, every=batch))


def test_layers_not_estimated_nan_are_left_out_of_the_correlation_and_the_share():
    nan = float("nan")
    gaussian = _rows("gaussian", [nan, 0.1, 0.2, 0.3, nan], [nan, 0.3, 0.2, 0.1, nan])
    found = _agreement(_rows("batch-published", 0.02 * LAYERS, 0.1 * LAYERS), gaussian)
    assert found.pearson == {"s": pytest.approx(1.0), "u2": pytest.approx(-1.0)}
    assert found.u2_share[GAUSSIAN] is None and found.u2_share_why[GAUSSIAN] == "an atom is missing at the output layer"
    thin = _rows("gaussian", [nan, nan, nan, 0.3, 0.4], [nan, nan, nan, 0.1, 0.2])
    found = _agreement(_rows("batch-published", 0.02 * LAYERS, 0.1 * LAYERS), thin)
    assert found.pearson["s"] is None and found.pearson_why["s"] == "S is known at 2 common layers only, fewer than 3"
