"""The results database (DuckDB): every SQL statement of the project lives in this package.

schema.py names the tables, their columns and the public `atoms` view; read.py reads with short read-only
connections that retry while a writer holds the lock, open no other file and no extension, refuse views that reach
DuckDB's own state, give up past a time and memory limit, and report DuckDB's errors as a StoreError; write.py
writes short keyed units; merge.py merges a sweep unit's shard into the shared database.
"""

from pidcore.store.blobs import image_to_png
from pidcore.store.read import (SAMPLE_TABLE_COLUMNS, StoreError, fitted_estimators, load_calibration,
                                load_hidden_states, load_samples,
                                read_atoms, read_diagnostics, read_evaluated_ids, read_layer_results,
                                read_letter_mass, read_pointwise, read_progress, read_run, read_run_questions,
                                read_run_settings, read_runs, read_sample_image, read_sample_images, read_sample_table,
                                read_task_pid,
                                reference_runs, run_depth, runs_without_texts, stored_hidden_ids, stored_layers,
                                stored_sample_ids,
                                table_sizes)
from pidcore.store.schema import MAX_STORED_IMAGE_BYTES, LayerResult, RunProgress, SampleRow, SampleText
from pidcore.store.write import (compact, ensure_schema, register_run, write_calibration, write_hidden_states,
                                 write_layer, write_published, write_sample_texts, write_samples, write_task_pid)

__all__ = ["MAX_STORED_IMAGE_BYTES", "SAMPLE_TABLE_COLUMNS", "LayerResult", "RunProgress", "SampleRow", "SampleText",
           "StoreError", "compact", "ensure_schema", "fitted_estimators", "image_to_png", "load_calibration",
           "load_hidden_states", "load_samples", "read_atoms", "read_diagnostics", "read_evaluated_ids",
           "read_layer_results", "read_letter_mass", "read_pointwise", "read_progress", "read_run",
           "read_run_questions", "read_run_settings", "read_runs", "read_sample_image", "read_sample_images",
           "read_sample_table", "read_task_pid", "reference_runs", "register_run", "run_depth", "runs_without_texts",
           "stored_hidden_ids", "stored_layers", "stored_sample_ids", "table_sizes", "write_calibration",
           "write_hidden_states", "write_layer", "write_published", "write_sample_texts", "write_samples",
           "write_task_pid"]
