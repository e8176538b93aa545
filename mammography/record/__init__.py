"""The artifact-logging layer: run directories, run.log tee, summary.json, provenance.

Nothing here imports torch, the engine or the data layer: the layer must stay
cheap and usable by every command, including the ones that never touch a
model. ``contract`` names every file and variable; ``lifecycle.Run`` is a run;
``protocol.RunContext`` is what command bodies may use of it.
"""

from mammography.record.lifecycle import Run
from mammography.record.protocol import RunContext
from mammography.record.reporter import Reporter

__all__ = ["Reporter", "Run", "RunContext"]
