"""A loaded model's weights as bytes for the cluster's tasks, verified where they are used.

Why bytes through Ray's object store rather than a path on shared storage: the
driver has already loaded and checked the model (a weights-only load of
``best_model.pt``, a ``--weights`` file, timm's pretrained weights from this
machine's cache), and the tasks must run *that* model. Shipping its state
means no node needs the run folder, the weights file or timm's cache, a
checkpoint rewritten after the driver read it cannot slip in, and
``map_shards`` puts the per-shard function (which holds the bytes) into the
object store once for all tasks. The sha256 recorded in summary.json is the
one of these very bytes, and each task checks it before loading them
(``torch.load(weights_only=True)`` into the architecture rebuilt without
pretrained weights).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Any

import torch

#: What the bytes are the state of: a bare backbone (embed) or a density model (predict).
BACKBONE = "backbone"
DENSITY = "density_classifier"


class WeightsMismatch(RuntimeError):
    """The bytes a task received are not the ones the driver shipped (sha256 differs)."""


@dataclass
class ShippedWeights:
    kind: str  # BACKBONE or DENSITY
    arch: str
    embedding_dim: int
    data: bytes
    sha256: str

    @classmethod
    def of(cls, module: torch.nn.Module, kind: str, arch: str,
           embedding_dim: int = 0) -> ShippedWeights:
        """The state of ``module`` (on any device) as bytes, with their sha256."""
        buffer = io.BytesIO()
        torch.save({name: tensor.detach().cpu() for name, tensor
                    in module.state_dict().items()}, buffer)
        data = buffer.getvalue()
        return cls(kind, arch, embedding_dim, data, hashlib.sha256(data).hexdigest())

    def load(self) -> torch.nn.Module:
        """On a node: the model rebuilt from the bytes (eval mode, CPU), once verified."""
        from mammography.models.factory import create_backbone, create_model

        digest = hashlib.sha256(self.data).hexdigest()
        if digest != self.sha256:
            raise WeightsMismatch(f"the {self.arch} weights arrived with sha256 {digest}, "
                                  f"the driver shipped {self.sha256}")
        state = torch.load(io.BytesIO(self.data), map_location="cpu", weights_only=True)
        module: torch.nn.Module = (
            create_backbone(self.arch, pretrained=False) if self.kind == BACKBONE
            else create_model(self.arch, pretrained=False, embedding_dim=self.embedding_dim))
        module.load_state_dict(state)  # strict: every tensor, or the task fails
        return module.eval()

    def record(self) -> dict[str, Any]:
        """What summary.json says about the weights the tasks ran."""
        return {"kind": self.kind, "arch": self.arch, "bytes": len(self.data),
                "sha256": self.sha256, "shipped": "ray object store"}
