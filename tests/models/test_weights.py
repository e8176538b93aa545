"""--weights FILE loads every backbone tensor or is refused: layouts, wrappers, partial files.

Fixtures are state dicts of freshly built models (timm, torchvision and the
EfficientNet-PyTorch package, with random values): real key layouts, no
downloaded weights.
"""

from __future__ import annotations

import pickle

import pytest
import timm
import torch
import torchvision

from mammography.errors import InputError
from mammography.models.factory import create_backbone, describe_weights, weights_source
from mammography.models.weights import read_tensors

torch.set_num_threads(1)


def randomised(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every tensor random (fresh models have zero-initialised layers whose output is ~0,
    which would hide a wrong mapping); running variances positive."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.dtype.is_floating_point:
                continue
            noise = torch.rand(tensor.shape, generator=generator)
            tensor.copy_(noise * 0.5 + 0.5 if "running_var" in name else (noise - 0.5) * 0.4)
    return model.eval()


def features_match(reference, backbone, size: int = 96) -> float:
    """Largest relative difference between the reference model on a grey image repeated
    in three channels and our one-channel backbone (its first conv summed over colour)."""
    x = torch.randn(2, 1, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = reference(x.repeat(1, 3, 1, 1))
        ours = backbone.eval().forward_features(x)
    return float((ref - ours).abs().max() / ref.abs().max())


@pytest.fixture(scope="module")
def timm_source():
    return randomised(timm.create_model("test_efficientnet", pretrained=False))


def test_timm_layout_loads_every_tensor_and_adapts_the_first_conv(tmp_path, timm_source):
    path = tmp_path / "timm.pt"
    torch.save(timm_source.state_dict(), path)
    backbone = create_backbone("test_efficientnet", weights=path)
    record = weights_source(backbone)
    assert record["pretrained"] == "file"
    details = record["weights"]
    expected = len([k for k in backbone.state_dict() if not k.endswith("num_batches_tracked")])
    assert details["tensors_loaded"] == details["tensors_expected"] == expected
    assert details["layout"] == "timm names" and details["first_conv_adapted"]
    assert details["classifier_dropped"] == ["classifier.weight", "classifier.bias"]
    assert len(details["sha256"]) == 64 and details["bytes"] == path.stat().st_size
    source = timm_source.state_dict()
    for name, tensor in backbone.state_dict().items():
        if name == "conv_stem.weight":
            assert torch.allclose(tensor, source[name].sum(dim=1, keepdim=True))
        else:
            assert torch.equal(tensor, source[name]), name
    line, warnings = describe_weights(backbone)
    assert f"{expected} of {expected} backbone tensors loaded" in line and warnings == []


def test_wrappers_prefixes_and_safetensors_give_the_same_weights(tmp_path, timm_source):
    from safetensors.torch import save_file

    plain = tmp_path / "plain.pt"
    torch.save(timm_source.state_dict(), plain)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in
                                           timm_source.state_dict().items()}}, wrapped)
    safe = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in timm_source.state_dict().items()}, str(safe))
    reference = create_backbone("test_efficientnet", weights=plain).state_dict()
    for path in (wrapped, safe):
        backbone = create_backbone("test_efficientnet", weights=path)
        assert all(torch.equal(v, reference[k]) for k, v in backbone.state_dict().items())
    details = weights_source(create_backbone("test_efficientnet", weights=wrapped))["weights"]
    assert details["wrapper"] == "state_dict" and details["prefix"] == "module."


def test_same_tensors_under_other_names_map_by_position(tmp_path, timm_source):
    def rename(key):  # another naming scheme, same tensors in the same order
        base, kind = key.rsplit(".", 1)
        return "_" + base.replace(".", "_") + "." + kind

    path = tmp_path / "other.pt"
    torch.save({rename(k): v for k, v in timm_source.state_dict().items()}, path)
    backbone = create_backbone("test_efficientnet", weights=path)
    details = weights_source(backbone)["weights"]
    assert details["layout"].startswith("by position (_conv_stem.weight -> conv_stem.weight")
    assert details["tensors_loaded"] == details["tensors_expected"]
    assert features_match(timm_source.forward_features, backbone) < 1e-5


def test_efficientnet_pytorch_layout_reproduces_its_features_in_the_tf_variant(tmp_path):
    efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")
    source = randomised(efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0",
                                                                     image_size=96))
    source.set_swish(memory_efficient=False)
    path = tmp_path / "b0.pth"
    torch.save(source.state_dict(), path)
    backbone = create_backbone("tf_efficientnet_b0", weights=path)
    details = weights_source(backbone)["weights"]
    assert details["layout"].startswith("by position (_conv_stem.weight")
    assert details["classifier_dropped"] == ["_fc.weight", "_fc.bias"]
    assert features_match(source.extract_features, backbone) < 1e-5
    # The non-TF variant takes the same tensors but computes other features: a warning.
    _, warnings = describe_weights(create_backbone("efficientnet_b0", weights=path))
    assert any("tf_efficientnet_b0 reproduces them exactly" in w for w in warnings)


def test_torchvision_resnet_loads_by_name_with_the_same_features(tmp_path):
    source = randomised(torchvision.models.resnet18(weights=None))
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    backbone = create_backbone("resnet18", weights=path)
    details = weights_source(backbone)["weights"]
    assert details["layout"] == "timm names" and details["classifier_dropped"] == [
        "fc.weight", "fc.bias"]
    trunk = torch.nn.Sequential(*list(source.children())[:-2])
    assert features_match(trunk, backbone, size=64) < 1e-5


def test_weights_of_another_architecture_are_refused_with_counts_and_names(tmp_path):
    path = tmp_path / "resnet.pt"
    torch.save(timm.create_model("test_resnet", pretrained=False).state_dict(), path)
    with pytest.raises(InputError) as info:
        create_backbone("test_efficientnet", weights=path)
    text = str(info.value)
    assert str(path) in text and "0 of 73 tensors would load" in text
    assert "backbone tensors missing from the file: blocks." in text
    assert "have no place in the backbone: conv1." in text
    assert "--allow-partial-weights" in text


def test_a_file_missing_some_tensors_is_refused_naming_them(tmp_path, timm_source):
    state = dict(timm_source.state_dict())
    for name in ("blocks.3.0.se.conv_reduce.weight", "blocks.3.0.se.conv_reduce.bias"):
        del state[name]
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    with pytest.raises(InputError) as info:
        create_backbone("test_efficientnet", weights=path)
    assert "71 of 73 tensors would load" in str(info.value)
    assert "blocks.3.0.se.conv_reduce.bias" in str(info.value)


def test_allow_partial_loads_what_matches_and_says_so(tmp_path, timm_source):
    state = dict(timm_source.state_dict())
    del state["bn2.weight"]
    path = tmp_path / "partial.pt"
    torch.save(state, path)
    backbone = create_backbone("test_efficientnet", weights=path, allow_partial=True)
    details = weights_source(backbone)["weights"]
    assert details["partial"] and details["missing"] == ["bn2.weight"]
    assert details["tensors_loaded"] == details["tensors_expected"] - 1
    assert torch.equal(backbone.state_dict()["bn2.bias"], state["bn2.bias"])
    _, warnings = describe_weights(backbone)
    assert "only 72 of 73 backbone tensors came from" in warnings[0]


class Payload:
    """An object a weights-only load must not construct."""


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_files_that_are_not_state_dicts_are_refused(tmp_path):
    pickled = tmp_path / "code.pt"
    with pickled.open("wb") as handle:
        pickle.dump({"state_dict": Payload()}, handle)
    with pytest.raises(InputError, match="not a plain weights file"):
        read_tensors(pickled)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listed)
    with pytest.raises(InputError, match="not a state dict"):
        read_tensors(listed)
    empty = tmp_path / "empty.pt"
    torch.save({"epoch": 1, "note": "no tensors"}, empty)
    with pytest.raises(InputError, match="holds no tensors"):
        read_tensors(empty)
