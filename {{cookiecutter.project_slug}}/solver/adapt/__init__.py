"""Adapting a source to the test set: prior shift, head tuning, multilabel thresholds."""
