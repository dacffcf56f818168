"""The pipelines that fill the store: `profile` (a model on a dataset), the stage-2 import (the paper pipeline's
JSON), and the case study's analysis of one uploaded sample."""
