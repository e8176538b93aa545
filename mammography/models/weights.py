"""A local weights file into a backbone: every tensor, or a clear refusal.

"Pretrained" weights that were never loaded are the quietest way to get a
wrong result, so a ``--weights FILE`` is loaded strictly:

1. **Read** the file without executing anything (``.safetensors``, or
   ``torch.load(weights_only=True)``), unwrap a ``state_dict`` / ``model`` /
   ``model_state_dict`` / ``state_dict_ema`` wrapper and a ``module.`` (DDP)
   or ``model.`` prefix. A checkpoint of a larger model keeps the backbone
   under a prefix beside other parts (Mammo-CLIP: ``model`` holds
   ``image_encoder.model.*`` - its EfficientNet-B2/B5 image encoder - next to
   ``text_encoder.*`` and the projections): the prefix is ``--weights-prefix``,
   or found - the one prefix under which the tensors fit the backbone
   completely (nested prefixes that both fit: the innermost); the tensors
   outside it are not the backbone's and are counted, not loaded.
2. **Drop what the backbone does not have by design**: the classifier (this
   project puts its own density head on the pooled features). The first
   convolution is *adapted* from RGB to one grey channel (timm's
   ``adapt_input_conv``, summing over colour), not dropped.
3. **Match** the rest to the backbone's state dict: by name when the file
   uses timm's names (timm mirrors torchvision for ResNets), else by position
   when the mapping is exact — the same number of tensors, in the same order,
   with the same shapes and the same kind of tensor (``weight``, ``bias``,
   ``running_mean`` ...) at every position (EfficientNet-PyTorch's
   ``_conv_stem``/``_blocks.N`` layout onto timm's ``conv_stem``/``blocks``).
4. **Load strictly**: anything missing, unexpected or of another shape is an
   ``InputError`` (exit 2) naming the file, the counts and a few names — unless
   ``allow_partial``, which loads what matches by name and shape and says how
   much did not.

The :class:`WeightsReport` is what summary.json records under
``model_config.weights``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mammography.errors import InputError

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "net", "module")
PREFIXES = ("module.", "model.", "backbone.")
#: Classifier names of common layouts (timm's own is read from the model's config).
CLASSIFIER_NAMES = ("fc", "classifier", "head", "head.fc", "_fc", "last_linear", "linear",
                    "heads.head")
#: Bookkeeping buffers, not weights: absent from old checkpoints, never required.
COUNTER_SUFFIXES = ("num_batches_tracked",)
SHOWN_NAMES = 5


@dataclass
class WeightsReport:
    """What happened to a weights file (summary.json ``model_config.weights``)."""

    path: str
    sha256: str
    bytes: int
    layout: str  # how names were matched: "timm names" or "by position (<first file key>)"
    wrapper: str | None = None
    prefix: str | None = None
    #: How the prefix was chosen: "given" (--weights-prefix), "found" (the only one the
    #: backbone fits under), or None (the whole file is the backbone).
    prefix_source: str | None = None
    #: Tensors of the file outside the prefix: the rest of a larger checkpoint, not loaded.
    tensors_outside_prefix: int = 0
    tensors_expected: int = 0
    tensors_loaded: int = 0
    classifier_dropped: list[str] = field(default_factory=list)
    first_conv_adapted: bool = False
    partial: bool = False
    notes: list[str] = field(default_factory=list)  # worth a WARNING, not a refusal
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        text = (f"{self.tensors_loaded} of {self.tensors_expected} backbone tensors loaded from "
                f"{self.path} ({self.layout}")
        if self.wrapper:
            text += f", inside '{self.wrapper}'"
        if self.prefix and self.tensors_outside_prefix:
            text += (f", the backbone under '{self.prefix}' ({self.prefix_source}; "
                     f"{self.tensors_outside_prefix} other tensors of the file not used)")
        elif self.prefix:
            text += f", '{self.prefix}' prefix removed"
        if self.first_conv_adapted:
            text += ", first convolution adapted to 1 channel"
        if self.classifier_dropped:
            text += f", classifier dropped: {', '.join(self.classifier_dropped[:2])}"
        return text + ")"


def sha256_of(path: Path) -> str:
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """(name → tensor, the wrapper key it was found under) of a weights file."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            return dict(load_file(str(path))), None
        except Exception as exc:
            raise InputError(f"Cannot read --weights {path}: not a readable safetensors file "
                             f"({type(exc).__name__}: {exc}).") from None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            AttributeError, TypeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise InputError(
            f"Refusing to load --weights {path}: it is not a plain weights file (corrupt, "
            f"truncated, or it holds code/objects a weights-only load does not execute: "
            f"{first}). Save a state dict (torch.save(model.state_dict(), ...)) or use "
            ".safetensors.") from None
    wrapper = None
    for _ in range(2):  # e.g. {"model": {"state_dict": {...}}}
        if isinstance(data, dict) and not _is_tensor_dict(data):
            key = next((k for k in WRAPPER_KEYS if isinstance(data.get(k), dict)), None)
            if key is None:
                break
            wrapper = key if wrapper is None else f"{wrapper}.{key}"
            data = data[key]
    if not isinstance(data, dict):
        raise InputError(f"--weights {path} holds a {type(data).__name__}, not a state dict "
                         "(name → tensor).")
    tensors = {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise InputError(f"--weights {path} holds no tensors (keys: "
                         f"{', '.join(map(str, list(data)[:SHOWN_NAMES]))}).")
    return tensors, wrapper


def _is_tensor_dict(data: dict[Any, Any]) -> bool:
    return bool(data) and sum(isinstance(v, torch.Tensor) for v in data.values()) > len(data) / 2


def _strip_prefix(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str | None]:
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in tensors):
            return {k[len(prefix):]: v for k, v in tensors.items()}, prefix
    return tensors, None


def _is_counter(name: str) -> bool:
    return name.rsplit(".", 1)[-1] in COUNTER_SUFFIXES


def _kind(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _drop_classifier(tensors: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                     classifier: str | None) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The file without its classifier: known names, else a trailing Linear the backbone
    has no place for."""
    names = {n for n in (classifier, *CLASSIFIER_NAMES) if n}
    dropped = [k for k in tensors if k.rsplit(".", 1)[0] in names and k not in target]
    kept = {k: v for k, v in tensors.items() if k not in dropped}
    keys = list(kept)
    if not dropped and len(keys) >= 2 and len(_weights_only(kept)) > len(_weights_only(target)):
        weight, bias = keys[-2], keys[-1]
        if (_kind(weight), _kind(bias)) == ("weight", "bias") and kept[weight].ndim == 2 \
                and kept[bias].ndim == 1 and weight not in target:
            dropped = [weight, bias]
            kept = {k: v for k, v in kept.items() if k not in dropped}
    return kept, dropped


def _weights_only(tensors: dict[str, torch.Tensor]) -> list[str]:
    return [k for k in tensors if not _is_counter(k)]


def _adapt(name: str, tensor: torch.Tensor, wanted: torch.Tensor,
           first_conv: str | None) -> tuple[torch.Tensor, bool]:
    """The file's first convolution summed to the backbone's input channels."""
    if first_conv and name == first_conv and tensor.ndim == 4 and wanted.ndim == 4 \
            and tensor.shape[1] != wanted.shape[1] \
            and tensor.shape[0] == wanted.shape[0] and tensor.shape[2:] == wanted.shape[2:]:
        from timm.models import adapt_input_conv

        return adapt_input_conv(int(wanted.shape[1]), tensor.float()).to(tensor.dtype), True
    return tensor, False


def _by_position(tensors: dict[str, torch.Tensor],
                 target: dict[str, torch.Tensor]) -> dict[str, str] | None:
    """file name → backbone name when both sequences align exactly (else None)."""
    source, dest = _weights_only(tensors), _weights_only(target)
    if len(source) != len(dest):
        return None
    for a, b in zip(source, dest, strict=True):
        shape_ok = tensors[a].shape == target[b].shape or (
            tensors[a].ndim == 4 and target[b].ndim == 4
            and tensors[a].shape[0] == target[b].shape[0]
            and tensors[a].shape[2:] == target[b].shape[2:] and a == source[0])
        if not shape_ok or _kind(a) != _kind(b):
            return None
    mapping = dict(zip(source, dest, strict=True))
    # Counters follow the tensor group they belong to, when the file has them.
    for name in tensors:
        if _is_counter(name):
            base = name.rsplit(".", 1)[0]
            owner = next((dest_name for src_name, dest_name in mapping.items()
                          if src_name.rsplit(".", 1)[0] == base), None)
            if owner is not None:
                counterpart = owner.rsplit(".", 1)[0] + "." + _kind(name)
                if counterpart in target:
                    mapping[name] = counterpart
    return mapping


@dataclass
class _Plan:
    """How a file's tensors would go into the backbone (nothing loaded yet)."""

    state: dict[str, torch.Tensor]
    layout: str
    dropped: list[str]
    missing: list[str]
    unexpected: list[str]
    mismatched: list[str]
    first_conv_adapted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)


def _plan(tensors: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
          classifier: str | None, first_key: str | None, arch: str) -> _Plan:
    """Match ``tensors`` to the backbone's ``target``: by name, else by exact position."""
    tensors, dropped = _drop_classifier(tensors, target, classifier)
    names = {k: k for k in tensors}
    layout = "timm names"
    notes: list[str] = []
    required = set(_weights_only(target))
    if not required <= set(tensors):
        mapping = _by_position(tensors, target)
        if mapping is not None:
            names = mapping
            first = _weights_only(tensors)[0]
            layout = f"by position ({first} -> {mapping[first]})"
            if first.startswith("_conv_stem") and arch and not arch.startswith("tf_"):
                # Measured: into tf_efficientnet_b0 the features match to 4e-7; into
                # efficientnet_b0 they differ by ~0.2 % (padding, batch-norm epsilon).
                notes.append(
                    "these look like EfficientNet-PyTorch weights, ports of TensorFlow "
                    f"models: timm's tf_{arch} reproduces them exactly (TF 'same' padding, "
                    f"batch-norm epsilon 1e-3); {arch} computes slightly different features")
    plan = _Plan({}, layout, dropped, [], [], [], notes=notes)
    for source_name, tensor in tensors.items():
        dest_name = names.get(source_name)
        if dest_name is None or dest_name not in target:
            plan.unexpected.append(source_name)
            continue
        tensor, adapted = _adapt(dest_name, tensor, target[dest_name], first_key)
        plan.first_conv_adapted |= adapted
        if tensor.shape != target[dest_name].shape:
            plan.mismatched.append(f"{source_name} {tuple(tensor.shape)} vs "
                                   f"{tuple(target[dest_name].shape)}")
            continue
        plan.state[dest_name] = tensor
    plan.missing = sorted(required - set(plan.state))
    return plan


def _under(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _prefixes(tensors: dict[str, torch.Tensor], at_least: int) -> list[str]:
    """Every dotted prefix (``a.``, ``a.b.``) under which at least ``at_least`` weight
    tensors sit: the places a backbone of that size could be."""
    counts: dict[str, int] = {}
    for name in _weights_only(tensors):
        parts = name.split(".")[:-1]
        for depth in range(1, len(parts) + 1):
            prefix = ".".join(parts[:depth]) + "."
            counts[prefix] = counts.get(prefix, 0) + 1
    return sorted(p for p, n in counts.items() if n >= at_least)


def _find_prefix(tensors: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                 path: Path, fit: Any) -> str | None:
    """The one prefix the backbone fits under completely (innermost of a nested chain);
    None when there is none; several unrelated ones are an ``InputError``."""
    fitting = [p for p in _prefixes(tensors, len(_weights_only(target)))
               if fit(_strip_prefix(_under(tensors, p))[0]).complete]
    # Nested prefixes that both fit hold the same backbone: keep the innermost.
    innermost = [p for p in fitting if not any(q != p and q.startswith(p) for q in fitting)]
    if len(innermost) > 1:
        raise InputError(f"--weights {path}: the backbone fits under several prefixes "
                         f"({', '.join(innermost)}); name the one to load with "
                         "--weights-prefix.")
    return innermost[0] if innermost else None


def load_weights(backbone: nn.Module, path: Path, *, allow_partial: bool = False,
                 first_conv: str | None = None, classifier: str | None = None,
                 arch: str = "", prefix: str | None = None) -> WeightsReport:
    """Load ``path`` into ``backbone`` (in place) and report what was loaded.

    ``first_conv``/``classifier`` are the backbone's own names for them (timm's
    pretrained config); ``first_conv`` is the module name (``conv_stem``).
    ``prefix``: where the backbone sits in a larger checkpoint (``--weights-prefix``);
    None looks for it when the whole file does not fit.
    """
    path = Path(path)
    everything, wrapper = read_tensors(path)
    target = backbone.state_dict()
    first_key = f"{first_conv}.weight" if first_conv else None

    def fit(tensors: dict[str, torch.Tensor]) -> _Plan:
        return _plan(tensors, target, classifier, first_key, arch)

    source: str | None = None
    if prefix is not None:
        tensors = _under(everything, prefix)
        if not tensors:
            raise InputError(f"--weights-prefix {prefix!r}: no tensor of {path} starts with "
                             f"it; its tensors sit under {_top_prefixes(everything)}.")
        source = "given"
    else:
        tensors = everything
        if not fit(_strip_prefix(everything)[0]).complete:
            found = _find_prefix(everything, target, path, fit)
            if found is not None:
                prefix, source, tensors = found, "found", _under(everything, found)
    tensors, stripped = _strip_prefix(tensors)
    plan = fit(tensors)
    shown_prefix = (prefix or "") + (stripped or "") or None
    report = WeightsReport(path=str(path.resolve()), sha256=sha256_of(path),
                           bytes=os.path.getsize(path), layout=plan.layout, wrapper=wrapper,
                           prefix=shown_prefix, prefix_source=source,
                           tensors_outside_prefix=len(everything) - len(tensors),
                           tensors_expected=len(_weights_only(target)),
                           classifier_dropped=plan.dropped,
                           first_conv_adapted=plan.first_conv_adapted, notes=plan.notes,
                           missing=plan.missing, unexpected=plan.unexpected,
                           mismatched=plan.mismatched)
    state = plan.state
    report.tensors_loaded = len([k for k in state if not _is_counter(k)])
    if not plan.complete and not allow_partial:
        raise InputError(_refusal(path, report, arch, everything if prefix is None else None))
    report.partial = not plan.complete
    # Counters the file lacks keep the backbone's own values.
    state = {**{k: v for k, v in target.items() if _is_counter(k)}, **state}
    backbone.load_state_dict(state, strict=plan.complete)
    return report


def _top_prefixes(tensors: dict[str, torch.Tensor]) -> str:
    """``image_encoder. (712), text_encoder. (199)``: where a file's tensors sit."""
    counts: dict[str, int] = {}
    for name in tensors:
        head = name.split(".", 1)[0] + "." if "." in name else name
        counts[head] = counts.get(head, 0) + 1
    shown = sorted(counts.items(), key=lambda kv: -kv[1])[:SHOWN_NAMES]
    return ", ".join(f"{head} ({n})" for head, n in shown)


def _refusal(path: Path, report: WeightsReport, arch: str,
             everything: dict[str, torch.Tensor] | None = None) -> str:
    def some(items: list[str]) -> str:
        shown = ", ".join(items[:SHOWN_NAMES])
        return shown + (f" (+{len(items) - SHOWN_NAMES} more)" if len(items) > SHOWN_NAMES
                        else "")

    parts = []
    if report.missing:
        parts.append(f"{len(report.missing)} backbone tensors missing from the file: "
                     f"{some(report.missing)}")
    if report.unexpected:
        parts.append(f"{len(report.unexpected)} tensors of the file have no place in the "
                     f"backbone: {some(report.unexpected)}")
    if report.mismatched:
        parts.append(f"{len(report.mismatched)} of another shape: {some(report.mismatched)}")
    backbone = f"the {arch} backbone" if arch else "this backbone"
    heads = _top_prefixes(everything) if everything else ""
    where = (f" The file's tensors sit under {heads}: if the backbone is one part of a "
             "larger checkpoint, name its prefix with --weights-prefix (e.g. "
             "image_encoder.model. for a Mammo-CLIP checkpoint)."
             if everything and len({n.split('.', 1)[0] for n in everything}) > 1 else "")
    return (f"--weights {path} does not fit {backbone}: {report.tensors_loaded} of "
            f"{report.tensors_expected} tensors would load; " + "; ".join(parts) + ". Give "
            "weights of the same architecture (timm or torchvision names, or the same tensors "
            "in the same order), pick the --arch they belong to, or pass "
            "--allow-partial-weights to load only what matches (recorded)." + where)
