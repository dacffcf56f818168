"""PID estimators: exact discrete (BROJA), BATCH for continuous features, and a k-means cross-check."""

from pidcore.estimators.batch import BatchConfig, BatchPIDEstimator, BatchPIDResult, batch_pid
from pidcore.estimators.cluster import cluster_pid
from pidcore.estimators.discrete import DiscretePID, discrete_pid

__all__ = ["BatchConfig", "BatchPIDEstimator", "BatchPIDResult", "DiscretePID", "batch_pid", "cluster_pid",
           "discrete_pid"]
