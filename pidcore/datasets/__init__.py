"""Dataset loaders of the probing engine: MMBench, POPE, PMC-VQA, generic JSONL and the paper's JSON."""

from pidcore.datasets.registry import load_dataset
from pidcore.datasets.sample import DatasetError, LoadedDataset, Sample

__all__ = ["DatasetError", "LoadedDataset", "Sample", "load_dataset"]
