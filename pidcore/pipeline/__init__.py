"""The pipelines that run models and estimators: `profile` (a model on a dataset) and the stage-2 import (the paper
pipeline's JSON) fill the store; the case study scores one uploaded sample against a stored run."""
