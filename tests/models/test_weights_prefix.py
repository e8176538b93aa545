"""--weights of a larger checkpoint: the backbone under a prefix (Mammo-CLIP), found or named.

The fixture is a checkpoint laid out as Mammo-CLIP's released ``.tar`` files are
(``torch.save({"model": state_dict, "optimizer": ..., "config": ..., "epoch": ...})``,
the image encoder's timm model under ``image_encoder.model.``, its own ``fc`` beside
it, a text encoder and projections), built from timm's own architecture with random
values: no downloaded weights.
"""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from mammography.errors import InputError
from mammography.models.factory import create_backbone, describe_weights, weights_source
from tests.models.test_weights import randomised

torch.set_num_threads(1)


def mammo_clip_checkpoint(path, encoder: nn.Module, *, det_layout: dict | None = None,
                          extra_encoder: str | None = None) -> dict[str, torch.Tensor]:
    """A Mammo-CLIP-layout checkpoint of ``encoder`` (a timm model, classifier removed as
    Mammo-CLIP's EfficientNet_Mammo does); ``det_layout``: the image encoder's tensors
    under other names (its EfficientNet-PyTorch "-detect" encoders), directly under
    ``image_encoder.``. Returns the encoder's tensors by our backbone's names."""
    state = encoder.state_dict()
    features = encoder.num_features
    generator = torch.Generator().manual_seed(3)
    model: dict[str, torch.Tensor] = {}
    if det_layout is None:
        model |= {f"image_encoder.model.{k}": v for k, v in state.items()}
        model["image_encoder.fc.weight"] = torch.randn(1, features, generator=generator)
        model["image_encoder.fc.bias"] = torch.zeros(1)
    else:
        model |= {f"image_encoder.{k}": v for k, v in det_layout.items()}
    if extra_encoder:
        model |= {f"{extra_encoder}.model.{k}": v.clone() for k, v in state.items()}
    # The text side (Bio_ClinicalBERT's names, tiny) and the two projections.
    bert = "text_encoder.text_encoder."
    model[f"{bert}embeddings.word_embeddings.weight"] = torch.randn(40, 8, generator=generator)
    model[f"{bert}embeddings.position_embeddings.weight"] = torch.randn(16, 8,
                                                                        generator=generator)
    model[f"{bert}encoder.layer.0.attention.self.query.weight"] = torch.randn(
        8, 8, generator=generator)
    model[f"{bert}encoder.layer.0.attention.self.query.bias"] = torch.zeros(8)
    model["image_projection.projection.weight"] = torch.randn(4, features, generator=generator)
    model["text_projection.projection.weight"] = torch.randn(4, 8, generator=generator)
    model["logit_scale"] = torch.tensor(2.6593)
    torch.save({"model": model,
                "optimizer": {"state": {}, "param_groups": [{"lr": 5e-5, "params": [0, 1]}]},
                "scheduler": {"last_epoch": 7, "_step_count": 8},
                "config": {"model": {"image_encoder": {"source": "cnn",
                                                       "name": "tf_efficientnet_b5_ns",
                                                       "pretrained": True,
                                                       "model_type": "cnn"}}},
                "epoch": 7, "train_loss": 0.41}, path)
    return state


@pytest.fixture(scope="module")
def encoder():
    """Mammo-CLIP's EfficientNet_Mammo: a timm model, one input channel, no classifier."""
    model = randomised(timm.create_model("test_efficientnet", pretrained=False, in_chans=1))
    model.reset_classifier(0)
    return model


def _same_backbone(backbone: nn.Module, state: dict[str, torch.Tensor]) -> None:
    ours = backbone.state_dict()
    assert set(ours) == set(state)
    for name, tensor in ours.items():
        assert torch.equal(tensor, state[name]), name


def test_the_image_encoder_is_found_under_its_prefix_and_loaded_whole(tmp_path, encoder):
    path = tmp_path / "b5-model-best-epoch-7.tar"
    state = mammo_clip_checkpoint(path, encoder)
    backbone = create_backbone("test_efficientnet", weights=path)
    _same_backbone(backbone, state)
    details = weights_source(backbone)["weights"]
    assert details["wrapper"] == "model" and details["prefix"] == "image_encoder.model."
    assert details["prefix_source"] == "found" and details["layout"] == "timm names"
    assert details["tensors_loaded"] == details["tensors_expected"]
    # fc (2), 4 text-encoder tensors, 2 projections and logit_scale: not the backbone
    assert details["tensors_outside_prefix"] == 9
    assert not details["partial"] and not details["first_conv_adapted"]
    line, warnings = describe_weights(backbone)
    assert "under 'image_encoder.model.' (found; 9 other tensors" in line and warnings == []


def test_a_named_prefix_is_used_as_given(tmp_path, encoder):
    path = tmp_path / "ckpt.tar"
    state = mammo_clip_checkpoint(path, encoder)
    backbone = create_backbone("test_efficientnet", weights=path,
                               weights_prefix="image_encoder.model.")
    _same_backbone(backbone, state)
    assert weights_source(backbone)["weights"]["prefix_source"] == "given"


def test_a_prefix_that_holds_no_tensor_or_not_the_backbone_is_refused(tmp_path, encoder):
    path = tmp_path / "ckpt.tar"
    mammo_clip_checkpoint(path, encoder)
    with pytest.raises(InputError, match="no tensor of .* starts with it; its tensors sit "
                                         "under image_encoder. "):
        create_backbone("test_efficientnet", weights=path, weights_prefix="vision_model.")
    with pytest.raises(InputError, match="does not fit the test_efficientnet backbone"):
        create_backbone("test_efficientnet", weights=path, weights_prefix="text_encoder.")


def test_two_backbones_in_one_file_need_the_prefix_named(tmp_path, encoder):
    path = tmp_path / "two.tar"
    state = mammo_clip_checkpoint(path, encoder, extra_encoder="teacher")
    with pytest.raises(InputError, match="fits under several prefixes .*image_encoder.model."
                                         ".*teacher.model.*--weights-prefix"):
        create_backbone("test_efficientnet", weights=path)
    backbone = create_backbone("test_efficientnet", weights=path,
                               weights_prefix="teacher.model.")
    _same_backbone(backbone, state)


def test_another_architecture_is_refused_naming_the_prefixes(tmp_path, encoder):
    path = tmp_path / "ckpt.tar"
    mammo_clip_checkpoint(path, encoder)
    with pytest.raises(InputError) as refused:
        create_backbone("resnet18", weights=path)
    text = str(refused.value)
    assert "does not fit the resnet18 backbone" in text
    assert "sit under image_encoder. (" in text and "--weights-prefix" in text


def test_the_detector_encoders_efficientnet_pytorch_names_load_by_position(tmp_path):
    """Mammo-CLIP's "-detect" encoders are EfficientNet-PyTorch models directly under
    ``image_encoder.`` (``_conv_stem``, ``_blocks.N``, no ``_fc``): by position into the
    tf_ variant, found without naming the prefix."""
    efficientnet_pytorch = pytest.importorskip("efficientnet_pytorch")
    source = randomised(efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0",
                                                                   in_channels=1))
    det = {k: v for k, v in source.state_dict().items() if not k.startswith("_fc.")}
    reference = timm.create_model("tf_efficientnet_b0", pretrained=False, in_chans=1)
    reference.reset_classifier(0)
    path = tmp_path / "b2-det.tar"
    mammo_clip_checkpoint(path, reference, det_layout=det)
    backbone = create_backbone("tf_efficientnet_b0", weights=path)
    details = weights_source(backbone)["weights"]
    assert details["prefix"] == "image_encoder." and details["prefix_source"] == "found"
    assert details["layout"].startswith("by position (_conv_stem.weight -> conv_stem.weight")
    assert details["tensors_loaded"] == details["tensors_expected"]
    x = torch.randn(1, 1, 96, 96, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = source.extract_features(x)
        ours = backbone.eval().forward_features(x)
    assert float((ref - ours).abs().max() / ref.abs().max()) < 1e-4
