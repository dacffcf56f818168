"""Cross-check for BATCH: cluster x1 and x2 with k-means and solve the resulting discrete PID exactly."""

from __future__ import annotations

import numpy as np

from pidcore.estimators.discrete import DiscretePID, discrete_pid
from pidcore.estimators.validation import check_sample_set


def cluster_joint(x1, x2, p_y_x1x2, clusters: int = 8, seed: int = 0) -> np.ndarray:
    """P[c1, c2, y] = mean over samples of [c1(x1) = c1][c2(x2) = c2] p(y | x1, x2)."""
    from sklearn.cluster import KMeans  # imported here: scikit-learn (with scipy) costs ~1 s, and only this needs it

    x1, x2, _, _, p12 = (t.numpy() for t in check_sample_set(x1, x2, p_y_x1x2, p_y_x1x2, p_y_x1x2, "cluster"))
    n_clusters = min(clusters, len(x1))
    labels1 = KMeans(n_clusters, n_init=4, random_state=seed).fit_predict(x1)
    labels2 = KMeans(n_clusters, n_init=4, random_state=seed).fit_predict(x2)
    joint = np.zeros((n_clusters, n_clusters, p12.shape[1]))
    np.add.at(joint, (labels1, labels2), p12)
    return joint / joint.sum()


def cluster_pid(x1, x2, p_y_x1x2, clusters: int = 8, seed: int = 0, device: str = "auto") -> DiscretePID:
    """Exact PID (bits) of the k-means-discretised features with the full probe as p(y | x1, x2)."""
    return discrete_pid(cluster_joint(x1, x2, p_y_x1x2, clusters, seed), device=device)
