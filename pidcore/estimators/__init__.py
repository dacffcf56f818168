"""PID estimators: exact discrete (BROJA), BATCH for continuous features, a k-means cross-check, and the exact
Gaussian PID of jointly Gaussian variables."""

from pidcore.estimators.batch import BatchPIDResult, batch_pid
from pidcore.estimators.batch_config import BatchConfig
from pidcore.estimators.cluster import cluster_pid
from pidcore.estimators.discrete import DiscretePID, discrete_pid
from pidcore.estimators.fitted import BatchPIDEstimator
from pidcore.estimators.gaussian import GaussianPID, gaussian_pid, gaussian_pid_from_covariance

__all__ = ["BatchConfig", "BatchPIDEstimator", "BatchPIDResult", "DiscretePID", "GaussianPID", "batch_pid",
           "cluster_pid", "discrete_pid", "gaussian_pid", "gaussian_pid_from_covariance"]
