"""The artifact-logging layer: run directories, run.log tee, summary.json, provenance.

Nothing here imports torch: the layer must stay cheap and usable by every
command, including the ones that never touch a model.
"""

from mammography.run.lifecycle import Run

__all__ = ["Run"]
