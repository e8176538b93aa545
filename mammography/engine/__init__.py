"""Training and evaluation engine (metrics.py is torch-free)."""
