"""One training or evaluation pass on a tiny model and an in-memory loader (CPU)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from mammography.engine.batches import prepare_batch, staged_batches
from mammography.engine.device import Precision
from mammography.engine.train.loop import PassOutput, evaluate, train_one_epoch

CPU = torch.device("cpu")
FP32 = Precision(False, None, False)
H = W = 6


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class TinyNet(nn.Module):
    """Flattened pixels -> 4 logits; same call signature as DensityModel."""

    def __init__(self, dropout: float = 0.0, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.embedding_dim = 0
        self.linear = nn.Linear(H * W, 4)
        self.dropout = nn.Dropout(dropout)
        self.calls: list[torch.Tensor | None] = []

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        self.calls.append(embedding)
        return self.linear(self.dropout(x.flatten(1)))


def make_items(n: int = 10, seed: int = 0) -> list[tuple[torch.Tensor, int, int, torch.Tensor]]:
    """What CachedImageDataset yields: (uint16 [1,H,W], label, row index, empty embedding)."""
    rng = np.random.default_rng(seed)
    items = []
    for row in range(n):
        image = torch.from_numpy(rng.integers(0, 65536, size=(1, H, W)).astype(np.uint16))
        items.append((image, int(rng.integers(0, 4)), row, torch.zeros(0)))
    return items


def loader(items, batch_size: int = 4, shuffle: bool = False, seed: int = 0) -> DataLoader:
    return DataLoader(items, batch_size=batch_size, shuffle=shuffle,
                      generator=torch.Generator().manual_seed(seed) if shuffle else None)


def normalised(image: torch.Tensor) -> torch.Tensor:
    """The documented conversion, computed here in float64 numpy: v / 65535, then ImageNet grey."""
    v = image.numpy().astype(np.float64) / 65535.0
    return torch.from_numpy(((v - 0.449) / 0.226).astype(np.float32))


def cross_entropy(logits: np.ndarray, labels: np.ndarray, weight: np.ndarray | None = None
                  ) -> float:
    """Mean (class-weighted) cross-entropy, as nn.CrossEntropyLoss defines it."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    nll = -logp[np.arange(len(labels)), labels]
    w = np.ones(4) if weight is None else weight
    return float((w[labels] * nll).sum() / w[labels].sum())


def params(model: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def counter() -> tuple[list[int], object]:
    calls: list[int] = []
    return calls, lambda: calls.append(1)


# --------------------------------------------------------------------------- prepare_batch


def test_prepare_batch_converts_uint16_and_normalises():
    images = torch.stack([item[0] for item in make_items(3)])
    x = prepare_batch(images, CPU)
    assert x.dtype == torch.float32 and x.shape == (3, 1, H, W)
    torch.testing.assert_close(x, torch.stack([normalised(i) for i in images]),
                               atol=1e-6, rtol=0)


def test_prepare_batch_augments_only_with_a_generator():
    images = torch.stack([item[0] for item in make_items(8)])
    plain = prepare_batch(images, CPU)
    a = prepare_batch(images, CPU, generator=torch.Generator().manual_seed(1))
    b = prepare_batch(images, CPU, generator=torch.Generator().manual_seed(1))
    c = prepare_batch(images, CPU, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.allclose(a, c) and not torch.allclose(a, plain)
    # still normalised afterwards: inside the normalised image of [0, 1]
    assert a.min().item() >= (0 - 0.449) / 0.226 - 1e-5
    assert a.max().item() <= (1 - 0.449) / 0.226 + 1e-5


def test_prepare_batch_channels_last():
    images = torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8)  # 3 channels: a real layout
    x = prepare_batch(images, CPU, channels_last=True)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert not prepare_batch(images, CPU).is_contiguous(memory_format=torch.channels_last)
    expected = ((images.numpy() / 255.0 - 0.449) / 0.226).astype(np.float32)
    np.testing.assert_allclose(x.numpy(), expected, atol=1e-6)


# --------------------------------------------------------------------------- staged_batches


def test_staged_batches_pass_through_on_cpu():
    items = make_items(10)
    batches = list(staged_batches(loader(items), CPU))
    assert len(batches) == 3
    for images, y, targets, rows, embeddings in batches:
        assert images.dtype == torch.uint16 and images.shape[1:] == (1, H, W)
        assert y is targets and y.dtype == torch.int64
        assert embeddings.shape == (len(rows), 0)
        for image, label, row in zip(images, targets.tolist(), rows.tolist(), strict=True):
            assert torch.equal(image, items[row][0]) and label == items[row][1]
    assert [len(b[3]) for b in batches] == [4, 4, 2]


# --------------------------------------------------------------------------- evaluate


@pytest.mark.parametrize("class_weight", [None, (1.0, 2.0, 0.5, 3.0)])
def test_evaluate_loss_probs_and_indices(class_weight):
    items = make_items(10)
    model = TinyNet(dropout=0.5)
    model.train()
    weight = None if class_weight is None else torch.tensor(class_weight)
    calls, on_step = counter()
    out = evaluate(model, loader(items, batch_size=4, shuffle=True), nn.CrossEntropyLoss(weight),
                   device=CPU, precision=FP32, channels_last=False, on_step=on_step)
    assert isinstance(out, PassOutput)
    assert len(calls) == 3  # once per batch (4 + 4 + 2)
    assert not model.training  # left in eval mode (dropout off)
    assert all(e is None for e in model.calls)  # an empty embedding is not fused

    # every row once, each with its own label
    assert sorted(out.indices.tolist()) == list(range(10))
    assert out.indices.tolist() != list(range(10))  # shuffled: order kept from the loader
    assert out.labels.tolist() == [items[i][1] for i in out.indices]
    assert out.labels.dtype == np.int64 and out.indices.dtype == np.int64

    assert out.probs.shape == (10, 4) and out.probs.dtype == np.float32
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, atol=1e-6)
    # each row's probabilities: softmax of the model on that image (eval mode, no dropout)
    with torch.no_grad():
        model.eval()
        logits = model.linear(torch.stack([normalised(items[i][0]) for i in out.indices])
                              .flatten(1)).numpy().astype(np.float64)
    expected_probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out.probs, expected_probs, atol=1e-5)

    # loss: batch-size-weighted mean of the per-batch (class-weighted) mean losses
    w = None if weight is None else np.array(class_weight)
    labels = out.labels
    bounds = [(0, 4), (4, 8), (8, 10)]
    per_batch = [cross_entropy(logits[a:b], labels[a:b], w) for a, b in bounds]
    expected = sum(loss * (b - a) for loss, (a, b) in zip(per_batch, bounds, strict=True)) / 10
    assert out.loss == pytest.approx(expected, rel=1e-5)
    if w is not None:  # not the class-weighted mean over all rows at once
        assert out.loss != pytest.approx(cross_entropy(logits, labels, w), rel=1e-4)


def test_evaluate_changes_no_parameter_or_gradient():
    model = TinyNet()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.25)
    before = params(model)
    evaluate(model, loader(make_items(9)), nn.CrossEntropyLoss(), device=CPU, precision=FP32,
             channels_last=False)
    for p, old in zip(model.parameters(), before, strict=True):
        assert torch.equal(p.detach(), old)
        assert torch.equal(p.grad, torch.full_like(p, 0.25))


def test_evaluate_on_an_empty_loader():
    out = evaluate(TinyNet(), [], nn.CrossEntropyLoss(), device=CPU, precision=FP32,
                   channels_last=False)
    assert out.loss == 0.0 and out.labels.size == 0 and out.indices.size == 0
    assert out.probs.size == 0


def test_pass_output_images_per_second():
    labels = np.zeros(50, dtype=np.int64)
    out = PassOutput(0.1, labels, np.zeros((50, 4)), labels, seconds=2.0)
    assert out.images_per_second == 25.0
    assert PassOutput(0.1, labels, np.zeros((50, 4)), labels, seconds=0.0).images_per_second == 0


# --------------------------------------------------------------------------- train_one_epoch


def train(model, batches, *, lr: float = 0.1, grad_clip: float = 0.0, generator=None,
          scaler=None, on_step=None, optimizer=None) -> PassOutput:
    optimizer = optimizer or torch.optim.SGD(model.parameters(), lr=lr)
    return train_one_epoch(model, batches, optimizer, nn.CrossEntropyLoss(), device=CPU,
                           precision=FP32, scaler=scaler, generator=generator,
                           grad_clip=grad_clip, channels_last=False, on_step=on_step)


def test_train_one_epoch_matches_a_hand_written_sgd_loop():
    items = make_items(10)
    model = TinyNet()
    reference, before = copy.deepcopy(model), params(model)
    calls, on_step = counter()
    model.eval()
    out = train(model, loader(items), lr=0.1, on_step=on_step)
    assert model.training  # switched to training mode
    assert len(calls) == 3

    # the same three SGD steps written out, from the documented conversion
    losses, sizes = [], []
    for a, b in [(0, 4), (4, 8), (8, 10)]:
        x = torch.stack([normalised(items[i][0]) for i in range(a, b)]).flatten(1)
        y = torch.tensor([items[i][1] for i in range(a, b)])
        loss = nn.functional.cross_entropy(reference.linear(x), y)
        reference.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in reference.parameters():
                p -= 0.1 * p.grad
        losses.append(loss.item())
        sizes.append(b - a)
    for p, q, old in zip(model.parameters(), reference.parameters(), before, strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
        assert (p - old).abs().max().item() > 1e-4  # it moved
    # the reported loss: batch-size-weighted mean of the pre-step batch losses
    assert out.loss == pytest.approx(np.average(losses, weights=sizes), rel=1e-5)
    assert sorted(out.indices.tolist()) == list(range(10))
    assert out.probs.shape == (10, 4)
    np.testing.assert_allclose(out.probs.sum(axis=1), 1.0, atol=1e-6)


def step_norm(before: list[torch.Tensor], model: nn.Module) -> float:
    deltas = [(p.detach() - b).flatten() for p, b in zip(model.parameters(), before, strict=True)]
    return torch.cat(deltas).norm().item()


def test_grad_clip_bounds_the_step():
    items = make_items(4)
    lr, clip = 1e6, 1e-6
    clipped = TinyNet()
    before = params(clipped)
    train(clipped, loader(items), lr=lr, grad_clip=clip)
    # one SGD step of lr * (gradient clipped to norm `clip`): at most lr * clip = 1
    assert 0.99 <= step_norm(before, clipped) <= 1.0 + 1e-4

    free = TinyNet()
    train(free, loader(items), lr=lr, grad_clip=0.0)  # 0 disables clipping
    assert step_norm(before, free) > 1e3


def test_train_one_epoch_with_an_augmentation_generator_is_seeded():
    items = make_items(8)
    runs = []
    for seed in (1, 1, 2, None):
        model = TinyNet()
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        train(model, loader(items), generator=gen)
        runs.append(params(model))
    same, other, plain = (all(torch.equal(p, q) for p, q in zip(runs[0], r, strict=True))
                          for r in runs[1:])
    assert same and not other and not plain


def test_train_one_epoch_with_a_grad_scaler_equals_no_scaler():
    """The scaler unscales before clipping: same clipped steps as without one (power-of-2 scale,
    so exact in float32)."""
    items = make_items(10)
    results = []
    for scaler in (None, torch.amp.GradScaler("cpu", init_scale=2.0 ** 10)):
        model = TinyNet()
        train(model, loader(items), lr=0.5, grad_clip=0.05, scaler=scaler)
        results.append(params(model))
    for p, q in zip(*results, strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
