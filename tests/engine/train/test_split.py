"""Degenerate splits are explained and never give a NaN loss."""

import math

import pytest
import torch

from mammography.engine.train.split import class_weights, warn_missing_classes
from mammography.record.reporter import CollectingReporter


def test_auto_weights_are_inverse_frequency_and_an_absent_class_gets_one():
    weights = class_weights("auto", [0, 0, 1, 1, 1, 2])
    # n / (K * count): 6 / (4 * 2), 6 / (4 * 3), 6 / (4 * 1); class D absent -> 1
    assert weights.tolist() == pytest.approx([0.75, 0.5, 1.5, 1.0])
    assert class_weights("none", [0, 1]) is None
    assert class_weights([1.0, 2.0, 3.0, 4.0], [0]).tolist() == [1.0, 2.0, 3.0, 4.0]


def test_validation_loss_stays_finite_for_a_class_training_never_saw():
    weights = class_weights("auto", [0, 0, 1, 2])  # no D in training
    loss = torch.nn.CrossEntropyLoss(weight=weights)
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    only_d = torch.full((5,), 3)  # a validation batch of D images only
    value = float(loss(logits, only_d))
    assert math.isfinite(value)
    assert value == pytest.approx(float(torch.nn.functional.cross_entropy(logits, only_d)))


def test_classes_on_one_side_of_the_split_are_named():
    run = CollectingReporter()
    warn_missing_classes(run, [0, 1, 1, 2], [1, 2, 3, 3])
    assert len(run.warnings) == 2
    assert run.warnings[0].startswith("classes D are in validation but not in training")
    assert run.warnings[1].startswith("classes A are in training but not in validation")
    quiet = CollectingReporter()
    warn_missing_classes(quiet, [0, 1, 2, 3], [3, 2, 1, 0])
    assert quiet.lines == []
