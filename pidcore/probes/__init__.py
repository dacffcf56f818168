"""Masked probes, features and the logit lens for one VLM."""
