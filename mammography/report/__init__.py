"""Report artefacts for a run: plots (PNG) written with matplotlib's Agg canvas."""
