"""PID estimators: exact discrete (BROJA), BATCH for continuous features, and a k-means cross-check."""

from pidcore.estimators.batch import BatchPIDResult, batch_pid
from pidcore.estimators.batch_config import BatchConfig
from pidcore.estimators.cluster import cluster_pid
from pidcore.estimators.discrete import DiscretePID, discrete_pid
from pidcore.estimators.fitted import BatchPIDEstimator

__all__ = ["BatchConfig", "BatchPIDEstimator", "BatchPIDResult", "DiscretePID", "batch_pid", "cluster_pid",
           "discrete_pid"]
