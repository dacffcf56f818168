"""Loading Hugging Face VLMs, the family adapter table, and tiny offline models for tests and smoke tests."""
