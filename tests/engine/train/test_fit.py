"""The epoch loop around hand-built FitContexts: history, checkpoints, model selection,
early stopping, stop reasons, and interrupt + resume (bit-identical on CPU)."""

from __future__ import annotations

import csv
import json
import math
import signal

import numpy as np
import pytest
import torch
from sklearn.metrics import cohen_kappa_score
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from mammography.domain import short_metrics
from mammography.engine.checkpoint import load_safely
from mammography.engine.device import Precision, seed_everything
from mammography.engine.train.fit import (
    FitContext,
    FitState,
    fit,
    restore,
    save_last,
    write_history,
)
from mammography.engine.train.schedule import EpochSchedule, build_optimizer
from mammography.errors import InputError, RunInterrupted
from mammography.models.factory import create_model, parameter_groups
from mammography.record.contract import BEST_MODEL_FILE as BEST_FILE
from mammography.record.contract import HISTORY_CSV, HISTORY_JSON
from mammography.record.contract import LAST_CHECKPOINT_FILE as LAST_FILE
from tests.helpers import RecordingRun

CPU = torch.device("cpu")
FP32 = Precision(False, None, False)
TIMING = {"train_seconds", "val_seconds", "train_images_per_second", "val_images_per_second",
          "epoch_seconds"}

# Validation rows: two images per exam, labels 0..3; row r's pixels all equal 100 * (r + 1).
VAL_LABELS = np.array([0, 0, 1, 1, 2, 2, 3, 3])
OFF_BY_ONE = np.array([1, 1, 2, 2, 3, 3, 2, 2])


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def preds(wrong: int) -> np.ndarray:
    """Predictions with the first ``wrong`` rows one class off, the rest right."""
    return np.where(np.arange(8) < wrong, OFF_BY_ONE, VAL_LABELS)


def kappa_of(wrong: int) -> float:
    return cohen_kappa_score(VAL_LABELS, preds(wrong), weights="quadratic", labels=[0, 1, 2, 3])


class FakeRun(RecordingRun):
    """What fit() uses of a Run: log, update, get (the checkpoints' record), check_stop,
    graceful_stop."""

    def __init__(self, directory, stop_after: int | None = None, on_first_step=None,
                 on_update=None) -> None:
        super().__init__(directory)  # the run directory: ctx.run_dir
        self.on_update = on_update  # called at each epoch's summary update (files written)
        self.lines: list[str] = []
        self.updates: list[dict] = []
        self.graceful_stop = False
        self.graceful_seen: set[bool] = set()
        self.stop_requested = False
        self.steps = 0
        self.stop_after = stop_after
        self.on_first_step = on_first_step

    def log(self, message: str) -> None:
        self.lines.append(message)

    def update(self, fragment=None, **fields) -> None:
        super().update(fragment, **fields)
        if "results" not in fields:
            return  # a checkpoint's digest recorded, not the epoch's summary update
        self.updates.append(fields)
        if self.on_update is not None:
            self.on_update()

    def check_stop(self) -> None:
        self.steps += 1
        self.graceful_seen.add(self.graceful_stop)
        if self.steps == 1 and self.on_first_step is not None:
            self.on_first_step()
        if self.stop_after is not None and self.steps >= self.stop_after:
            self.stop_requested = True
            raise RunInterrupted(signal.SIGINT)


class ScriptedModel(nn.Module):
    """Training: logits from a learnable bias. Validation: the predictions ``script[e - 1]``
    in epoch e (one train() call per epoch), for the row read back from the image."""

    def __init__(self, script: list[np.ndarray]) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(4))
        self.embedding_dim = 0
        self.script = script
        self.epoch = 0

    def train(self, mode: bool = True) -> ScriptedModel:
        if mode:
            self.epoch += 1
        return super().train(mode)

    def forward(self, x: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            return self.bias.expand(x.shape[0], 4) + x.mean(dim=(1, 2, 3))[:, None]
        value = (x[:, 0, 0, 0].double() * 0.226 + 0.449) * 65535  # undo the normalisation
        rows = torch.round(value / 100).long() - 1
        predicted = torch.as_tensor(self.script[self.epoch - 1])[rows]
        return nn.functional.one_hot(predicted, 4).float() * 3 + 0 * self.bias


def items(n: int, labels, *, size: int = 4, seed: int = 0, row_pixels: bool = False):
    rng = np.random.default_rng(seed)
    out = []
    for row in range(n):
        if row_pixels:
            array = np.full((1, size, size), 100 * (row + 1), dtype=np.uint16)
        else:  # brighter with the class, so a real model has something to learn
            base = 12000 * int(labels[row]) + 4000
            array = (base + rng.integers(0, 8000, (1, size, size))).astype(np.uint16)
        out.append((torch.from_numpy(array), int(labels[row]), row, torch.zeros(0)))
    return out


def context(model: nn.Module, run_dir, *, epochs: int, seed: int = 5, lr: float = 0.1,
            optimizer: str = "sgd", scheduler: str = "cosine", warmup: int = 1,
            patience: int = 0, augment: bool = False, size: int = 4, n_train: int = 8,
            val_items=None, val_batch: int = 3, callback=None, arch: str = "scripted",
            grad_clip: float = 0.0) -> FitContext:
    train_labels = np.arange(n_train) % 4
    train_set = items(n_train, train_labels, size=size, seed=seed)
    val_set = val_items if val_items is not None else items(8, VAL_LABELS, size=size,
                                                            row_pixels=True)
    sampler = DistributedSampler(train_set, num_replicas=1, rank=0, shuffle=True, seed=seed)
    train_loader = DataLoader(train_set, batch_size=4, sampler=sampler)
    val_loader = DataLoader(val_set, batch_size=val_batch, shuffle=True)  # a shuffled order
    groups = (parameter_groups(model, lr, 0.5, 1e-4) if hasattr(model, "backbone")
              else [{"params": list(model.parameters()), "lr": lr, "weight_decay": 0.0}])
    opt = build_optimizer(optimizer, groups)
    return FitContext(
        model=model, train_loader=train_loader, val_loader=val_loader,
        criterion=nn.CrossEntropyLoss(), optimizer=opt,
        schedule=EpochSchedule(opt, scheduler, epochs, warmup), scaler=None, device=CPU,
        precision=FP32, val_exam_ids=[f"exam{r // 2}" for r in range(len(val_set))],
        run_dir=run_dir, arch=arch, seed=seed, epochs=epochs, grad_clip=grad_clip,
        augment=augment, early_stop_patience=patience, preprocess={"img_size": size},
        normalization={"mean": 0.449, "std": 0.226}, checkpoint_extra={"run_id": "test-run"},
        epoch_callback=callback)


def read_json(path):
    return json.loads(path.read_text())


def comparable(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in history]


# --------------------------------------------------------------------------- the script


def test_the_scripted_kappas_are_ordered_as_the_tests_assume():
    k = [kappa_of(w) for w in range(9)]
    assert k[0] == 1.0
    assert k[0] > k[2] > k[4] > k[6]


# --------------------------------------------------------------------------- history


def test_history_rows_written_every_epoch(tmp_path):
    script = [preds(6), preds(4), preds(2), preds(0)]
    seen_on_disk = []

    def epoch_recorded():  # the end-of-epoch summary update comes after the files
        seen_on_disk.append(len(read_json(tmp_path / HISTORY_JSON)))

    ctx = context(ScriptedModel(script), tmp_path, epochs=4, lr=0.1, warmup=1)
    run = FakeRun(tmp_path, on_update=epoch_recorded)
    state = fit(ctx, FitState(), run=run, progress=False)

    assert seen_on_disk == [1, 2, 3, 4]
    history = read_json(tmp_path / HISTORY_JSON)
    assert history == json.loads(json.dumps(state.history))
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    # the scripted predictions' kappa, computed here with sklearn
    assert [row["val_kappa"] for row in history] == pytest.approx(
        [kappa_of(6), kappa_of(4), kappa_of(2), kappa_of(0)], abs=1e-12)
    assert [row["val_acc"] for row in history] == pytest.approx([2 / 8, 4 / 8, 6 / 8, 1.0])
    # warm-up 1 then cosine over 3 epochs: 0.1 * [1/2, 1, (1 + cos(pi/3))/2, (1 + cos(2pi/3))/2]
    assert [row["lr"] for row in history] == pytest.approx([0.05, 0.1, 0.075, 0.025])
    for key in ("train_loss", "train_acc", "train_kappa", "val_loss", "val_f1", "val_auc",
                "val_exam_kappa", "val_exam_acc", *TIMING):
        assert all(key in row for row in history), key

    with (tmp_path / HISTORY_CSV).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and list(rows[0]) == list(history[0])
    for csv_row, json_row in zip(rows, history, strict=True):
        for key, value in json_row.items():
            if value is None:
                assert csv_row[key] == ""
            else:
                assert float(csv_row[key]) == value, key  # the same number, not rounded

    assert [u["results"]["epochs_completed"] for u in run.updates] == [1, 2, 3, 4]
    assert run.updates[-1]["results"]["best_epoch"] == 4
    for n in (1, 2, 3, 4):
        assert f"Epoch {n}/4" in run.lines
    assert sum(line.startswith("✓ New best model (kappa: ") for line in run.lines) == 4
    assert state.epoch == 4 and state.stopped_by is None


def test_write_history_takes_the_union_of_columns(tmp_path):
    history = [{"epoch": 1, "val_kappa": 0.5}, {"epoch": 2, "lr": 0.01, "val_kappa": None}]
    write_history(tmp_path, history)
    assert (tmp_path / HISTORY_CSV).read_text() == "epoch,val_kappa,lr\n1,0.5,\n2,,0.01\n"
    assert read_json(tmp_path / HISTORY_JSON) == history
    assert sorted(p.name for p in tmp_path.iterdir()) == [HISTORY_CSV, HISTORY_JSON]  # no temps


def test_short_metrics_names():
    metrics = {"accuracy": 0.5, "kappa": 0.25, "macro_f1": 0.4, "auc": None, "loss": 1.5,
               "balanced_accuracy": 0.45, "confusion_matrix": [[1]]}
    assert short_metrics("val", metrics) == {
        "val_acc": 0.5, "val_kappa": 0.25, "val_f1": 0.4, "val_auc": None,
        "val_balanced_acc": 0.45, "val_loss": 1.5}
    assert short_metrics("train", {"loss": 2.0}) == {"train_loss": 2.0}


# --------------------------------------------------------------------------- model selection


def test_best_model_is_the_epoch_with_the_highest_val_kappa(tmp_path):
    # kappas: low, best, middle, equal to the best (a tie is not an improvement)
    script = [preds(6), preds(2), preds(4), preds(2)]
    biases = {}

    def callback(epoch, row):
        biases[epoch] = model.bias.detach().clone()

    model = ScriptedModel(script)
    ctx = context(model, tmp_path, epochs=4, callback=callback)
    state = fit(ctx, FitState(), run=FakeRun(tmp_path), progress=False)

    assert state.best_epoch == 2 and state.best_kappa == pytest.approx(kappa_of(2))
    assert state.epochs_without_improvement == 2
    best = load_safely(tmp_path / BEST_FILE, "best model")
    assert best["epoch"] == 2 and best["arch"] == "scripted" and best["run_id"] == "test-run"
    assert best["val_metrics"]["kappa"] == pytest.approx(kappa_of(2))
    assert best["preprocess"] == {"img_size": 4}
    assert torch.equal(best["state_dict"]["bias"], biases[2])  # the weights of epoch 2 ...
    assert not torch.equal(best["state_dict"]["bias"], biases[4])  # ... not the last ones
    # validation probabilities of the best epoch, in row order (the loader shuffled them)
    probs = np.array(state.best_val_probs)
    assert probs.shape == (8, 4)
    assert probs.argmax(axis=1).tolist() == preds(2).tolist()
    assert state.best_metrics["kappa"] == pytest.approx(kappa_of(2))
    assert state.best_exam_metrics["num_samples"] == 4  # two images per exam


def test_last_checkpoint_written_before_training_and_after_every_epoch(tmp_path):
    checkpoints = []

    def before_first_batch():
        checkpoints.append(load_safely(tmp_path / LAST_FILE))

    def epoch_recorded():  # the end-of-epoch summary update comes after the files
        checkpoints.append(load_safely(tmp_path / LAST_FILE))

    model = ScriptedModel([preds(4), preds(2), preds(0)])
    ctx = context(model, tmp_path, epochs=3)
    fit(ctx, FitState(), run=FakeRun(tmp_path, on_first_step=before_first_batch,
                                     on_update=epoch_recorded), progress=False)

    assert [c["fit_state"]["epoch"] for c in checkpoints] == [0, 1, 2, 3]
    assert [len(c["fit_state"]["history"]) for c in checkpoints] == [0, 1, 2, 3]
    assert not torch.equal(checkpoints[0]["state_dict"]["bias"], checkpoints[3]["state_dict"]
                           ["bias"])
    assert torch.equal(checkpoints[3]["state_dict"]["bias"], model.bias.detach())
    last = checkpoints[-1]
    assert (last["arch"], last["seed"], last["epochs"], last["format_version"]) == (
        "scripted", 5, 3, 1)
    assert {"optimizer", "schedule", "rng", "scaler"} <= set(last)
    assert last["schedule"]["base"] == [0.1]


# --------------------------------------------------------------------------- stopping


def test_early_stopping_after_patience_epochs_without_improvement(tmp_path):
    # improves in epochs 1 and 2, then worse, then a tie: 2 epochs without improvement
    script = [preds(4), preds(2), preds(6), preds(2), preds(0), preds(0)]
    run = FakeRun(tmp_path)
    ctx = context(ScriptedModel(script), tmp_path, epochs=6, patience=2)
    state = fit(ctx, FitState(), run=run, progress=False)
    assert [row["epoch"] for row in state.history] == [1, 2, 3, 4]
    assert state.epoch == 4 and state.best_epoch == 2 and state.stopped_by is None
    assert "Early stopping: no better validation kappa for 2 epochs" in run.lines
    assert len(read_json(tmp_path / HISTORY_JSON)) == 4
    assert load_safely(tmp_path / LAST_FILE)["fit_state"]["epoch"] == 4


@pytest.mark.parametrize("patience, reason", [
    (2, "early stopping: no better validation kappa for 2 epochs"),
    (0, "pruned by the test"),
])
def test_a_restored_state_that_had_stopped_trains_no_further(tmp_path, patience, reason):
    """A run killed after its fit stopped (while writing its results) and resumed
    ends where the uninterrupted run ended, however many epochs are left."""
    script = [preds(4), preds(2), preds(6), preds(2), preds(0), preds(0)]
    callback = (lambda epoch, row: reason if epoch == 4 else None) if not patience else None
    fit(context(ScriptedModel(script), tmp_path, epochs=6, patience=patience,
                callback=callback), FitState(), run=FakeRun(tmp_path), progress=False)
    restored = FitState(**load_safely(tmp_path / LAST_FILE)["fit_state"])
    assert restored.epoch == 4
    run = FakeRun(tmp_path)
    state = fit(context(ScriptedModel(script), tmp_path, epochs=6, patience=patience),
                restored, run=run, progress=False)
    assert state.epoch == 4 and len(state.history) == 4 and run.steps == 0
    assert f"Training had already stopped after epoch 4 ({reason}); nothing left to " \
        "train" in run.lines


def test_patience_zero_never_stops_early(tmp_path):
    script = [preds(0)] + [preds(6)] * 4
    state = fit(context(ScriptedModel(script), tmp_path, epochs=5, patience=0), FitState(),
                run=FakeRun(tmp_path), progress=False)
    assert state.epoch == 5 and state.epochs_without_improvement == 4 and state.best_epoch == 1


def test_epoch_callback_sees_the_epoch_that_stops_early(tmp_path):
    seen = []
    script = [preds(2), preds(4), preds(4), preds(0)]
    ctx = context(ScriptedModel(script), tmp_path, epochs=4, patience=2,
                  callback=lambda epoch, row: seen.append(epoch))
    state = fit(ctx, FitState(), run=FakeRun(tmp_path), progress=False)
    assert state.epoch == 3
    assert seen == [1, 2, 3]


def test_epoch_callback_reason_stops_training(tmp_path):
    seen = []

    def callback(epoch, row):
        seen.append((epoch, row["val_kappa"]))
        return "pruned by the test" if epoch == 2 else None

    run = FakeRun(tmp_path)
    script = [preds(6), preds(4), preds(2), preds(0), preds(0)]
    state = fit(context(ScriptedModel(script), tmp_path, epochs=5, callback=callback),
                FitState(), run=run, progress=False)
    assert seen == [(1, pytest.approx(kappa_of(6))), (2, pytest.approx(kappa_of(4)))]
    assert state.stopped_by == "pruned by the test" and state.epoch == 2
    assert len(state.history) == 2 and len(read_json(tmp_path / HISTORY_JSON)) == 2
    assert "Stopped after epoch 2: pruned by the test" in run.lines
    assert run.graceful_stop is False
    # the stop is in the checkpoint, so a resume knows the run was stopped
    assert load_safely(tmp_path / LAST_FILE)["fit_state"]["stopped_by"] == "pruned by the test"


def test_a_callback_returning_none_or_empty_does_not_stop(tmp_path):
    answers = iter([None, "", None])
    state = fit(context(ScriptedModel([preds(0)] * 3), tmp_path, epochs=3,
                        callback=lambda epoch, row: next(answers)),
                FitState(), run=FakeRun(tmp_path), progress=False)
    assert state.epoch == 3 and state.stopped_by is None


def test_interrupt_propagates_and_leaves_the_last_complete_epoch(tmp_path):
    # 8 train rows / 4 = 2 batches, 8 val rows / 3 = 3 batches: 5 steps per epoch
    run = FakeRun(tmp_path, stop_after=7)  # epoch 2, second train batch
    ctx = context(ScriptedModel([preds(4)] * 3), tmp_path, epochs=3)
    with pytest.raises(RunInterrupted):
        fit(ctx, FitState(), run=run, progress=False)
    assert run.graceful_seen == {True} and run.graceful_stop is False
    assert any(line.startswith("Stopped during epoch 2: last_checkpoint.pt holds epoch 1")
               for line in run.lines)
    assert load_safely(tmp_path / LAST_FILE)["fit_state"]["epoch"] == 1
    assert len(read_json(tmp_path / HISTORY_JSON)) == 1


# --------------------------------------------------------------------------- resume


def real_context(run_dir, *, init_seed: int, stop_after: int | None = None):
    """test_efficientnet at 16x16 with dropout, augmentation, AdamW, warm-up + cosine."""
    seed_everything(init_seed)
    model = create_model("test_efficientnet", pretrained=False)
    val_labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    val = items(8, val_labels, size=16, seed=99)
    return context(model, run_dir, epochs=4, seed=11, lr=3e-3, optimizer="adamw",
                   scheduler="cosine", warmup=1, augment=True, size=16, n_train=16,
                   val_items=val, val_batch=4, arch="test_efficientnet", grad_clip=1.0)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The uninterrupted reference fit (shared by the resume cases)."""
    run_dir = tmp_path_factory.mktemp("straight")
    ctx = real_context(run_dir, init_seed=0)
    state = fit(ctx, FitState(), run=FakeRun(run_dir), progress=False)
    return run_dir, ctx, state


@pytest.mark.parametrize("stop_after", [9, 12, 13])  # 4 train + 2 val steps per epoch
def test_interrupt_restore_continue_equals_an_uninterrupted_fit(tmp_path, straight_run,
                                                                 stop_after):
    straight_dir, straight_ctx, straight = straight_run
    split_dir, resumed_dir = tmp_path / "interrupted", tmp_path / "resumed"
    split_dir.mkdir()
    resumed_dir.mkdir()
    first = real_context(split_dir, init_seed=0)
    with pytest.raises(RunInterrupted):
        fit(first, FitState(), run=FakeRun(split_dir, stop_after=stop_after), progress=False)
    done = (stop_after - 1) // 6  # epochs completed before the interrupt

    # a fresh process and run directory (as --resume makes): other initial weights,
    # then everything restored from the interrupted run's last_checkpoint.pt
    second = real_context(resumed_dir, init_seed=123)
    state = restore(second, load_safely(split_dir / LAST_FILE))
    assert state.epoch == done and len(state.history) == done
    on_disk = []
    run = FakeRun(resumed_dir,
                  on_first_step=lambda: on_disk.append(read_json(resumed_dir / HISTORY_JSON)))
    resumed = fit(second, state, run=run, progress=False)

    assert comparable(on_disk[0]) == comparable(straight.history[:done])  # there at once
    assert comparable(resumed.history) == comparable(straight.history)  # bit-identical floats
    assert comparable(read_json(resumed_dir / HISTORY_JSON)) == comparable(straight.history)
    assert (resumed.best_epoch, resumed.best_kappa) == (straight.best_epoch, straight.best_kappa)
    assert resumed.best_val_probs == straight.best_val_probs
    for name, tensor in straight_ctx.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[name], tensor), name
    # the best model is saved again after the resume only if a later epoch beats it
    assert (resumed_dir / BEST_FILE).exists() == (straight.best_epoch > done)
    best_dir = resumed_dir if straight.best_epoch > done else split_dir
    best_a = load_safely(straight_dir / BEST_FILE)["state_dict"]
    best_b = load_safely(best_dir / BEST_FILE)["state_dict"]
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    assert len({row["train_loss"] for row in straight.history}) == 4  # it really trained


def test_restore_brings_back_optimizer_and_schedule_state(tmp_path):
    # plateau: no improvement after epoch 1, so the factor has decayed by the end
    ctx = context(ScriptedModel([preds(0)] + [preds(4)] * 3), tmp_path, epochs=4,
                  optimizer="adamw", scheduler="plateau", warmup=0)
    fit(ctx, FitState(), run=FakeRun(tmp_path), progress=False)
    assert ctx.schedule.plateau_factor == pytest.approx(0.1)

    fresh = context(ScriptedModel([preds(0)] * 4), tmp_path, epochs=4, optimizer="adamw",
                    scheduler="plateau", warmup=0)
    state = restore(fresh, load_safely(tmp_path / LAST_FILE))
    assert state.epoch == 4 and state.best_epoch == 1
    assert fresh.schedule.state_dict() == ctx.schedule.state_dict()
    saved, loaded = ctx.optimizer.state_dict(), fresh.optimizer.state_dict()
    assert saved["param_groups"] == loaded["param_groups"]
    for key, value in saved["state"][0].items():  # AdamW moments and step
        assert torch.equal(loaded["state"][0][key], value), key
    assert torch.equal(fresh.model.bias, ctx.model.bias)


def test_augmentation_is_seeded_from_seed_and_epoch(tmp_path, monkeypatch):
    """A new augmentation draw every epoch, the same draws for the same (seed, epoch)."""
    import mammography.engine.train.fit as fit_module

    seeds: list[int | None] = []
    real = fit_module.train_one_epoch

    def spy(*args, generator=None, **kwargs):
        seeds.append(None if generator is None else generator.initial_seed())
        return real(*args, generator=generator, **kwargs)

    monkeypatch.setattr(fit_module, "train_one_epoch", spy)
    runs = []
    for seed, augment in ((5, True), (5, True), (6, True), (5, False)):
        seeds.clear()
        ctx = context(ScriptedModel([preds(0)] * 3), tmp_path, epochs=3, seed=seed,
                      augment=augment)
        fit(ctx, FitState(), run=FakeRun(tmp_path), progress=False)
        runs.append(list(seeds))
    assert len(set(runs[0])) == 3  # one per epoch
    assert runs[0] == runs[1] and not set(runs[0]) & set(runs[2])
    assert runs[3] == [None] * 3  # no augmentation: no generator


def test_restore_refuses_another_arch_or_a_misfit_state_dict(tmp_path):
    ctx = context(ScriptedModel([preds(0)]), tmp_path, epochs=1)
    save_last(ctx, FitState(epoch=1, best_kappa=0.5), FakeRun(tmp_path))
    checkpoint = load_safely(tmp_path / LAST_FILE)
    assert restore(ctx, checkpoint) == FitState(epoch=1, best_kappa=0.5)

    ctx.arch = "test_resnet"
    with pytest.raises(InputError, match="the checkpoint is a scripted model, not test_resnet"):
        restore(ctx, checkpoint)
    ctx.arch = "scripted"
    checkpoint["state_dict"] = {"bias": torch.zeros(5)}
    with pytest.raises(InputError, match="does not fit this scripted model"):
        restore(ctx, checkpoint)


def test_fit_state_survives_a_weights_only_checkpoint(tmp_path):
    state = FitState(epoch=3, best_epoch=2, best_kappa=0.75, epochs_without_improvement=1,
                     history=[{"epoch": 1, "val_kappa": 0.5, "val_auc": None}],
                     best_val_probs=[[0.25] * 4], best_metrics={"kappa": 0.75},
                     stopped_by="pruned")
    torch.save({"fit_state": state.as_dict(), "state_dict": {}}, tmp_path / "c.pt")
    loaded = FitState(**torch.load(tmp_path / "c.pt", weights_only=True)["fit_state"])
    assert loaded == state
    assert FitState().best_kappa == -math.inf
