"""Density classifiers on timm backbones.

``DensityModel`` = any timm backbone (features only, one grey input channel)
+ a linear head over the pooled features (optionally concatenated with a
precomputed embedding, for fusion). Keeping the head separate from the
backbone gives one code path for freezing, per-group learning rates,
Grad-CAM (``features`` → ``pool`` → ``head``) and weights loading.

Weights: ``pretrained=True`` asks timm for its pretrained weights (cached
locally or downloaded) and loads them strictly; with no network that fails
and we say how to go on (``--weights FILE`` or ``--no-pretrained``).
``weights=FILE`` loads a local ``.pt/.pth/.safetensors`` strictly through
``models/weights.py`` (every backbone tensor or a refusal). Either way the
backbone records where its weights came from in ``weights_source``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mammography.errors import ConfigError, InputError

NUM_CLASSES = 4
IN_CHANS = 1


class DensityModel(nn.Module):
    def __init__(self, backbone: nn.Module, num_classes: int = NUM_CLASSES,
                 embedding_dim: int = 0, drop_rate: float = 0.2) -> None:
        super().__init__()
        self.backbone = backbone
        self.embedding_dim = embedding_dim
        self.num_features = pooled_dim(backbone)
        self.dropout = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features + embedding_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Unpooled backbone features (a B×C×H×W map for CNNs)."""
        return self.backbone.forward_features(x)

    def pool(self, features: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_head(features, pre_logits=True)

    def classify(self, pooled: torch.Tensor, embedding: torch.Tensor | None = None
                 ) -> torch.Tensor:
        if self.embedding_dim:
            if embedding is None:
                raise ValueError("this model fuses embeddings: pass embedding=")
            pooled = torch.cat([pooled, embedding.to(pooled.dtype)], dim=1)
        return self.head(self.dropout(pooled))

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        return self.classify(self.pool(self.features(x)), embedding)


def pooled_dim(backbone: nn.Module) -> int:
    """Size of ``forward_head(pre_logits=True)``: timm models with a conv head after
    pooling (MobileNetV3) report it as ``head_hidden_size``, not ``num_features``."""
    return int(getattr(backbone, "head_hidden_size", None) or backbone.num_features)


def _timm_create(arch: str, **kwargs: Any) -> nn.Module:
    import timm

    if not timm.is_model(arch):
        from mammography.models.arch import unknown_arch

        raise ConfigError(f"{unknown_arch(arch)}. List them with "
                          "`python -c \"import timm; print(timm.list_models())\"`.")
    kwargs.setdefault("num_classes", 0)  # pooled features; None = timm's own classifier
    if kwargs["num_classes"] is None:
        del kwargs["num_classes"]
    return timm.create_model(arch, in_chans=IN_CHANS, **kwargs)


def create_backbone(arch: str, *, pretrained: bool = False, weights: Path | None = None,
                    allow_partial: bool = False, weights_prefix: str | None = None
                    ) -> nn.Module:
    """The backbone (pooled features, one grey channel), its weights' origin recorded in
    ``backbone.weights_source``: ``{"pretrained": "none" | "timm" | "file", "weights": …}``.

    ``weights`` loads a local file strictly (``models/weights.py``): every backbone
    tensor or a clear refusal, unless ``allow_partial``; ``weights_prefix`` names where
    the backbone sits in a larger checkpoint (else it is found).
    """
    if weights is not None:
        return _from_file(arch, Path(weights), allow_partial, weights_prefix)
    if not pretrained:
        backbone = _timm_create(arch, pretrained=False)
        backbone.weights_source = {"pretrained": "none", "weights": None}
        return backbone
    cached = _create_from_local_cache(arch)
    if cached is not None:
        return cached
    problem = "no network connection to download them" if not _hub_reachable() else None
    if problem is None:
        try:
            return _from_timm(arch)
        except InputError:
            raise
        except Exception as exc:
            text = str(exc).splitlines()[0] if str(exc) else ""
            problem = f"the download failed: {type(exc).__name__}: {text}"
    raise InputError(
        f"Pretrained weights for {arch} are not in the local cache and {problem}. Pass "
        "--weights FILE with a local weights file, or --no-pretrained to start from random "
        "weights.")


def _from_file(arch: str, path: Path, allow_partial: bool, prefix: str | None) -> nn.Module:
    from mammography.models.weights import load_weights

    if not path.is_file():
        raise ConfigError(f"--weights {path} does not exist.")
    backbone = _timm_create(arch, pretrained=False)
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    first_conv = cfg.get("first_conv")
    first_conv = first_conv[0] if isinstance(first_conv, list | tuple) else first_conv
    classifier = cfg.get("classifier")
    classifier = classifier[0] if isinstance(classifier, list | tuple) else classifier
    report = load_weights(backbone, path, allow_partial=allow_partial, first_conv=first_conv,
                          classifier=classifier, arch=arch, prefix=prefix)
    backbone.weights_source = {"pretrained": "file", "weights": report.as_dict(),
                               "summary": report.describe()}
    return backbone


def _from_timm(arch: str) -> nn.Module:
    """timm's pretrained weights, loaded strictly: the model is built with timm's own
    classifier (so timm loads every tensor, first convolution adapted to one channel),
    then the classifier is removed."""
    backbone = _timm_create(arch, pretrained=True, num_classes=None)
    backbone.reset_classifier(0)
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    count = len([k for k in backbone.state_dict() if not k.endswith("num_batches_tracked")])
    source = cfg.get("hf_hub_id") or cfg.get("url") or cfg.get("tag") or arch
    backbone.weights_source = {
        "pretrained": "timm",
        "weights": {"source": "timm", "name": str(source), "tag": cfg.get("tag"),
                    "tensors_loaded": count, "tensors_expected": count},
        "summary": f"timm pretrained weights {source} ({count} backbone tensors)"}
    return backbone


def _create_from_local_cache(arch: str) -> nn.Module | None:
    """timm's pretrained weights from the local Hugging Face cache, without any network."""
    try:
        from huggingface_hub import constants
    except ImportError:
        return None
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        return _from_timm(arch)
    except InputError:
        raise
    except Exception:
        return None
    finally:
        constants.HF_HUB_OFFLINE = previous


def _hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """A quick check, so an offline machine fails in seconds, not after minutes of retries."""
    import socket

    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def create_model(arch: str, *, pretrained: bool = False, weights: Path | None = None,
                 num_classes: int = NUM_CLASSES, embedding_dim: int = 0,
                 drop_rate: float = 0.2, allow_partial: bool = False,
                 weights_prefix: str | None = None) -> DensityModel:
    backbone = create_backbone(arch, pretrained=pretrained, weights=weights,
                               allow_partial=allow_partial, weights_prefix=weights_prefix)
    return DensityModel(backbone, num_classes=num_classes, embedding_dim=embedding_dim,
                        drop_rate=drop_rate)


def last_block_prefix(model: DensityModel) -> str:
    """Name prefix (within ``backbone``) of the last feature stage, per timm's feature_info."""
    info = getattr(model.backbone, "feature_info", None)
    if info:
        last = info[-1]
        return last["module"] if isinstance(last, dict) else info.module_name(-1)
    children = [name for name, _ in model.backbone.named_children()]
    return children[-1]


def apply_freezing(model: DensityModel, freeze_backbone: bool,
                   unfreeze_last_block: bool) -> str:
    """Set ``requires_grad``; returns a one-line description for the log.

    With ``unfreeze_last_block`` the last stage *and everything after it*
    (e.g. EfficientNet's conv_head/bn2) train: parameters are registered in
    module order, so "after" is simply later in ``named_parameters``.
    """
    if not freeze_backbone:
        for param in model.parameters():
            param.requires_grad = True
        return "all layers trainable"
    for param in model.backbone.parameters():
        param.requires_grad = False
    for param in model.head.parameters():
        param.requires_grad = True
    if not unfreeze_last_block:
        return "backbone frozen, head trainable"
    prefix = last_block_prefix(model)
    reached = False
    for name, param in model.backbone.named_parameters():
        reached = reached or name == prefix or name.startswith(prefix + ".")
        if reached:
            param.requires_grad = True
    return f"backbone frozen except its last block ({prefix}) and after"


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable


def parameter_groups(model: DensityModel, lr: float, backbone_lr_ratio: float,
                     weight_decay: float) -> list[dict[str, Any]]:
    """Head at ``lr``, backbone at ``lr * backbone_lr_ratio``; frozen params left out."""
    head = [p for p in model.head.parameters() if p.requires_grad]
    backbone = [p for p in model.backbone.parameters() if p.requires_grad]
    groups = [{"params": head, "lr": lr, "weight_decay": weight_decay, "name": "head"}]
    if backbone:
        groups.append({"params": backbone, "lr": lr * backbone_lr_ratio,
                       "weight_decay": weight_decay, "name": "backbone"})
    return groups


def weights_source(model: nn.Module) -> dict[str, Any]:
    """Where a model's (or backbone's) weights came from: ``{"pretrained": "none" |
    "timm" | "file", "weights": details}`` (what summary.json ``model_config`` records)."""
    backbone = getattr(model, "backbone", model)
    source = getattr(backbone, "weights_source", None) or {"pretrained": "none",
                                                            "weights": None}
    return {"pretrained": source["pretrained"], "weights": source.get("weights")}


def describe_weights(model: nn.Module) -> tuple[str, list[str]]:
    """(the run.log line about the weights, the warnings they deserve)."""
    backbone = getattr(model, "backbone", model)
    source = getattr(backbone, "weights_source", None) or {}
    if source.get("pretrained") in (None, "none"):
        return "Weights: random initialisation (no pretrained weights)", []
    warnings = list((source.get("weights") or {}).get("notes") or [])
    details = source.get("weights") or {}
    if details.get("partial"):
        missing = details.get("missing") or []
        warnings.insert(0, f"--allow-partial-weights: only {details['tensors_loaded']} of "
                           f"{details['tensors_expected']} backbone tensors came from "
                           f"{details['path']}; the other {len(missing)} start from random "
                           f"values (e.g. {', '.join(missing[:3]) or 'none'})")
    return f"Weights: {source.get('summary')}", warnings
