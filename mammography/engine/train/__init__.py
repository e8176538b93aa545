"""Training one split: the epoch loop, its checkpoints, resuming it, what it leaves."""
