"""Hyper-parameter search on existing engines: Optuna (in process) and Ray Tune."""
