"""Density models on timm's tiny test architectures: shapes, fusion, freezing, parameter
groups, local weights files. Random initialisation only; nothing is downloaded."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest
import timm
import torch
from torch import nn

from mammography.errors import ConfigError, InputError
from mammography.models import factory
from mammography.models.factory import (
    DensityModel,
    apply_freezing,
    create_backbone,
    create_model,
    last_block_prefix,
    parameter_counts,
    parameter_groups,
    pooled_dim,
)

# (arch, input size, pooled feature size, names of the last stage *and after* in the backbone)
ARCHS = [
    ("test_efficientnet", 32, 256, ("blocks.4.", "conv_head.", "bn2.")),
    ("test_resnet", 32, 96, ("layer4.",)),
    ("test_vit", 160, 64, ("blocks.5.", "norm.")),  # a ViT has a fixed input size
]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to reach the network fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to use the network")
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


class ToyBackbone(nn.Module):
    """The backbone interface DensityModel uses, with hand-countable parameters."""

    num_features = 3

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)  # 1*3*3*3 + 3 = 30 parameters
        self.last = nn.BatchNorm2d(3)  # 3 + 3 = 6 parameters

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(self.conv(x))

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return features.mean(dim=(2, 3))


def trainable(module: nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if p.requires_grad}


def names(module: nn.Module) -> set[str]:
    return {name for name, _ in module.named_parameters()}


# --------------------------------------------------------------------------- forward


@pytest.mark.parametrize(("arch", "size", "features", "_tail"), ARCHS)
def test_forward_shapes_and_pooled_dim(arch, size, features, _tail):
    model = create_model(arch, pretrained=False).eval()
    assert model.num_features == features == pooled_dim(model.backbone)
    assert model.head.in_features == features and model.head.out_features == 4
    x = torch.randn(2, 1, size, size)  # one grey channel
    with torch.no_grad():
        logits = model(x)
        pooled = model.pool(model.features(x))
    assert logits.shape == (2, 4) and pooled.shape == (2, features)
    # forward = head(pool(features)) in eval mode (dropout off)
    torch.testing.assert_close(logits, pooled @ model.head.weight.T + model.head.bias)


def test_num_classes_and_dropout_rate():
    model = create_model("test_resnet", num_classes=3, drop_rate=0.5)
    assert model.head.out_features == 3 and model.dropout.p == 0.5
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 3)


def test_embedding_fusion_concatenates_after_pooling():
    torch.manual_seed(0)
    model = create_model("test_efficientnet", embedding_dim=5).eval()
    assert model.embedding_dim == 5 and model.head.in_features == 256 + 5
    x, emb = torch.randn(3, 1, 32, 32), torch.randn(3, 5)
    with torch.no_grad():
        logits = model(x, emb)
        pooled = model.pool(model.features(x))
        other = model(x, emb + 1.0)
    assert logits.shape == (3, 4)
    w, b = model.head.weight, model.head.bias
    torch.testing.assert_close(logits, pooled @ w[:, :256].T + emb @ w[:, 256:].T + b)
    assert not torch.allclose(logits, other)  # the embedding reaches the output
    # float64 embeddings are cast to the features' dtype
    torch.testing.assert_close(model(x, emb.double()), logits)
    with pytest.raises(ValueError, match="embedding="):
        model(x)


def test_without_fusion_the_embedding_argument_is_ignored():
    model = create_model("test_resnet").eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x, None))


def test_pooled_dim_prefers_head_hidden_size():
    assert pooled_dim(SimpleNamespace(num_features=7)) == 7
    assert pooled_dim(SimpleNamespace(num_features=7, head_hidden_size=None)) == 7
    assert pooled_dim(SimpleNamespace(num_features=7, head_hidden_size=11)) == 11
    # MobileNetV3: a conv head after pooling makes the pooled size differ from num_features
    model = create_model("mobilenetv3_small_050").eval()
    with torch.no_grad():
        pooled = model.pool(model.features(torch.randn(2, 1, 32, 32)))
    assert model.backbone.num_features != pooled.shape[1] == model.num_features
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 4)


# --------------------------------------------------------------------------- freezing


@pytest.mark.parametrize(("arch", "size", "_features", "tail"), ARCHS)
def test_apply_freezing(arch, size, _features, tail):
    model = create_model(arch)
    backbone = names(model.backbone)
    head = {f"head.{n}" for n in names(model.head)}

    for param in model.parameters():  # from any previous state
        param.requires_grad = False
    message = apply_freezing(model, freeze_backbone=True, unfreeze_last_block=False)
    assert message == "backbone frozen, head trainable"
    assert trainable(model) == head

    message = apply_freezing(model, freeze_backbone=True, unfreeze_last_block=True)
    last = {n for n in backbone if n.startswith(tail)}
    assert last and last != backbone
    assert trainable(model.backbone) == last
    assert trainable(model) == head | {f"backbone.{n}" for n in last}
    assert message == f"backbone frozen except its last block ({tail[0][:-1]}) and after"

    message = apply_freezing(model, freeze_backbone=False, unfreeze_last_block=True)
    assert message == "all layers trainable" and trainable(model) == names(model)


def test_unfreeze_last_block_matches_whole_names_only():
    """Last stage ``norm``: an earlier ``norm_pre`` (as in a ViT) must stay frozen."""
    backbone = ToyBackbone()
    backbone.norm_pre = nn.LayerNorm(3)
    backbone.mid = nn.Linear(3, 3)
    backbone.norm = nn.LayerNorm(3)
    backbone.feature_info = [{"module": "mid"}, {"module": "norm"}]
    model = DensityModel(backbone)
    assert last_block_prefix(model) == "norm"
    apply_freezing(model, freeze_backbone=True, unfreeze_last_block=True)
    assert trainable(model.backbone) == {"norm.weight", "norm.bias"}


def test_last_block_without_feature_info_is_the_last_child():
    model = DensityModel(ToyBackbone())
    assert last_block_prefix(model) == "last"
    apply_freezing(model, freeze_backbone=True, unfreeze_last_block=True)
    assert trainable(model) == {"backbone.last.weight", "backbone.last.bias", "head.weight",
                                "head.bias"}


def test_parameter_counts_by_hand():
    model = DensityModel(ToyBackbone(), embedding_dim=2)  # head: (3 + 2) * 4 + 4 = 24
    assert parameter_counts(model) == (30 + 6 + 24, 30 + 6 + 24)
    apply_freezing(model, freeze_backbone=True, unfreeze_last_block=False)
    assert parameter_counts(model) == (60, 24)
    apply_freezing(model, freeze_backbone=True, unfreeze_last_block=True)
    assert parameter_counts(model) == (60, 30)


# --------------------------------------------------------------------------- parameter groups


def test_parameter_groups_lrs_and_frozen_parameters_left_out():
    model = create_model("test_efficientnet")
    groups = parameter_groups(model, lr=1e-3, backbone_lr_ratio=0.1, weight_decay=0.05)
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in groups] == [
        ("head", 1e-3, 0.05), ("backbone", pytest.approx(1e-4), 0.05)]
    head, backbone = ({id(p) for p in g["params"]} for g in groups)
    assert head == {id(p) for p in model.head.parameters()}
    assert backbone == {id(p) for p in model.backbone.parameters()}

    apply_freezing(model, freeze_backbone=True, unfreeze_last_block=False)
    groups = parameter_groups(model, lr=1e-3, backbone_lr_ratio=0.1, weight_decay=0.0)
    assert [g["name"] for g in groups] == ["head"]  # no empty backbone group

    apply_freezing(model, freeze_backbone=True, unfreeze_last_block=True)
    groups = parameter_groups(model, lr=1e-3, backbone_lr_ratio=0.1, weight_decay=0.0)
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert in_groups == {id(p) for p in model.parameters() if p.requires_grad}
    assert sum(len(g["params"]) for g in groups) == len(in_groups)  # none twice
    # an optimizer accepts the groups as they are
    optimizer = torch.optim.AdamW(groups)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, pytest.approx(1e-4)]


# --------------------------------------------------------------------------- weights


def perturbed(module: nn.Module, seed: int) -> nn.Module:
    """Random values in every tensor (BatchNorm statistics too), so a load is visible."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
    return module


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_weights_file_from_the_same_architecture_is_loaded(tmp_path, suffix):
    source = perturbed(create_backbone("test_efficientnet"), seed=1)
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pt":
        torch.save(source.state_dict(), path)
    else:
        from safetensors.torch import save_file
        save_file(source.state_dict(), str(path))
    loaded = create_backbone("test_efficientnet", weights=path).state_dict()
    fresh = create_backbone("test_efficientnet").state_dict()
    assert loaded.keys() == source.state_dict().keys()
    for name, tensor in source.state_dict().items():
        assert torch.equal(loaded[name], tensor), name
    assert not torch.equal(fresh["conv_stem.weight"], loaded["conv_stem.weight"])
    # create_model passes the weights on to its backbone
    model = create_model("test_efficientnet", weights=path)
    assert torch.equal(model.backbone.bn2.running_var, source.bn2.running_var)


def test_rgb_imagenet_style_weights_are_adapted_to_one_channel(tmp_path):
    """A timm checkpoint (3 input channels, a 1000-class classifier): the first conv is summed
    over its input channels and the classifier dropped."""
    source = perturbed(timm.create_model("test_efficientnet"), seed=2).state_dict()
    assert source["conv_stem.weight"].shape[1] == 3 and "classifier.weight" in source
    torch.save(source, tmp_path / "rgb.pth")
    loaded = create_backbone("test_efficientnet", weights=tmp_path / "rgb.pth").state_dict()
    torch.testing.assert_close(loaded["conv_stem.weight"],
                               source["conv_stem.weight"].sum(dim=1, keepdim=True))
    assert not any(k.startswith("classifier.") for k in loaded)
    for name, tensor in loaded.items():
        if name != "conv_stem.weight":
            assert torch.equal(tensor, source[name]), name


def test_weights_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        create_backbone("test_resnet", weights=tmp_path / "missing.pt")
    torch.save(create_backbone("test_efficientnet").state_dict(), tmp_path / "eff.pt")
    with pytest.raises(InputError, match="--weights .* does not fit the test_resnet backbone"):
        create_backbone("test_resnet", weights=tmp_path / "eff.pt")


def test_unknown_arch_is_a_config_error():
    with pytest.raises(ConfigError, match="not a timm model"):
        create_model("no_such_arch_xyz", pretrained=False)
    with pytest.raises(ConfigError, match="similar: .*test_resnet"):
        create_model("test_resnt", pretrained=False)


def test_pretrained_without_cache_or_network_says_how_to_go_on(monkeypatch):
    monkeypatch.setattr(factory, "_create_from_local_cache", lambda arch: None)
    monkeypatch.setattr(factory, "_hub_reachable", lambda *a, **k: False)
    with pytest.raises(InputError, match="--weights FILE .* --no-pretrained"):
        create_backbone("test_resnet", pretrained=True)
