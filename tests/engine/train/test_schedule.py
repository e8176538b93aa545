"""Optimizer choice and the per-epoch learning-rate schedule, value by value."""

from __future__ import annotations

import io
import math

import pytest
import torch

from mammography.engine.train.schedule import EpochSchedule, build_optimizer

BASES = (1e-3, 2.5e-4)  # head and backbone, as parameter_groups makes them


def make_optimizer(name: str = "adamw", bases: tuple[float, ...] = BASES) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(3))], "lr": lr, "weight_decay": 0.01,
               "name": f"g{i}"} for i, lr in enumerate(bases)]
    return build_optimizer(name, groups)


def lrs_per_epoch(kind: str, epochs: int, warmup: int, kappas: list[float] | None = None,
                  bases: tuple[float, ...] = BASES) -> list[list[float]]:
    """Every group's lr in epochs 1..epochs, as fit() drives the schedule."""
    optimizer = make_optimizer(bases=bases)
    schedule = EpochSchedule(optimizer, kind, epochs, warmup)
    seen = []
    for epoch in range(1, epochs + 1):
        first = schedule.start_epoch(epoch)
        lrs = [g["lr"] for g in optimizer.param_groups]
        assert first == lrs[0]  # start_epoch reports the first group's lr
        seen.append(lrs)
        schedule.end_epoch(kappas[epoch - 1] if kappas else 0.0)
    return seen


def assert_factors(seen: list[list[float]], factors: list[float],
                   bases: tuple[float, ...] = BASES) -> None:
    assert len(seen) == len(factors)
    for epoch, (lrs, factor) in enumerate(zip(seen, factors, strict=True), start=1):
        expected = [base * factor for base in bases]
        assert lrs == pytest.approx(expected, rel=1e-12, abs=0), f"epoch {epoch}"


# --------------------------------------------------------------------------- optimizer


@pytest.mark.parametrize(("name", "cls"), [("adam", torch.optim.Adam),
                                           ("adamw", torch.optim.AdamW),
                                           ("sgd", torch.optim.SGD)])
def test_build_optimizer_kind_and_groups(name, cls):
    optimizer = make_optimizer(name)
    assert type(optimizer) is cls
    assert [g["lr"] for g in optimizer.param_groups] == list(BASES)
    assert [g["name"] for g in optimizer.param_groups] == ["g0", "g1"]
    assert all(g["weight_decay"] == 0.01 for g in optimizer.param_groups)
    if name == "sgd":
        assert all(g["momentum"] == 0.9 and g["nesterov"] for g in optimizer.param_groups)


def test_sgd_is_nesterov_momentum():
    """Two steps on f(w) = w with Nesterov momentum 0.9 (hand-computed)."""
    w = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer("sgd", [{"params": [w], "lr": 0.1}])
    for _ in range(2):
        optimizer.zero_grad()
        w.sum().backward()
        optimizer.step()
    # Nesterov: b1 = 1, step 1 = lr*(g + 0.9*b1) = 0.19; b2 = 1.9, step 2 = 0.1*(1 + 1.71)
    assert w.item() == pytest.approx(-(0.19 + 0.271), abs=1e-7)


# --------------------------------------------------------------------------- warm-up


@pytest.mark.parametrize("kind", ["cosine", "step", "plateau", "none"])
def test_linear_warmup_is_epoch_over_warmup_plus_one(kind):
    improving = [0.1 * e for e in range(1, 11)]  # so plateau does not decay
    seen = lrs_per_epoch(kind, epochs=10, warmup=3, kappas=improving)
    assert_factors(seen[:3], [1 / 4, 2 / 4, 3 / 4])
    # the first epoch after warm-up runs at the full base lr, whatever the kind
    assert_factors(seen[3:4], [1.0])


def test_warmup_is_capped_below_the_number_of_epochs():
    # warm-up 10 of 3 epochs: at most epochs - 1 = 2, so the last epoch still trains at full lr
    assert_factors(lrs_per_epoch("none", epochs=3, warmup=10), [1 / 3, 2 / 3, 1.0])
    # one epoch: no warm-up at all
    assert_factors(lrs_per_epoch("cosine", epochs=1, warmup=5), [1.0])
    assert EpochSchedule(make_optimizer(), "cosine", 0, 3).warmup == 0


def test_start_epoch_uses_the_base_lr_not_the_current_one():
    optimizer = make_optimizer()
    schedule = EpochSchedule(optimizer, "cosine", 6, 2)
    for _ in range(3):  # repeated calls must not compound the factor
        schedule.start_epoch(1)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([b / 3 for b in BASES])
    optimizer.param_groups[0]["lr"] = 123.0  # anything set in between is overwritten
    schedule.start_epoch(3)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx(list(BASES))


# --------------------------------------------------------------------------- schedules


def test_cosine_without_warmup_hand_values():
    # 4 epochs: 0.5 * (1 + cos(pi * k / 4)), k = 0..3
    assert_factors(lrs_per_epoch("cosine", epochs=4, warmup=0),
                   [1.0, 0.8535533905932737, 0.5, 0.14644660940672627])


def test_cosine_after_warmup_follows_the_formula():
    epochs, warmup = 10, 2
    span = epochs - warmup
    expected = [e / (warmup + 1) for e in range(1, warmup + 1)]
    expected += [0.5 * (1 + math.cos(math.pi * k / span)) for k in range(span)]
    seen = lrs_per_epoch("cosine", epochs, warmup)
    assert_factors(seen, expected)
    post = [lrs[1] for lrs in seen[warmup:]]
    assert post == sorted(post, reverse=True) and post[-1] > 0  # decays, never reaches 0


def test_step_divides_by_ten_every_third_of_the_post_warmup_span():
    assert_factors(lrs_per_epoch("step", epochs=9, warmup=0),
                   [1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01])
    # warm-up 1 of 10: span 9, thirds of 3 epochs starting at epoch 2
    assert_factors(lrs_per_epoch("step", epochs=10, warmup=1),
                   [0.5, 1, 1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01])
    # a span shorter than 3 epochs steps every epoch
    assert_factors(lrs_per_epoch("step", epochs=2, warmup=0), [1, 0.1])


def test_none_is_constant_and_ignores_kappa():
    assert_factors(lrs_per_epoch("none", epochs=5, warmup=0, kappas=[0.5] * 5), [1.0] * 5)


@pytest.mark.parametrize("kind", ["cosine", "step", "none"])
def test_only_plateau_watches_kappa(kind):
    flat = lrs_per_epoch(kind, epochs=8, warmup=1, kappas=[0.3] * 8)
    moving = lrs_per_epoch(kind, epochs=8, warmup=1, kappas=[0.1, 0.9, 0.2, 0.95, 0, 0, 0, 0])
    assert flat == moving


def test_plateau_decays_after_two_epochs_without_improvement():
    kappas = [0.5, 0.6, 0.6, 0.55,  # epochs 3 and 4 do not improve -> x0.1 from epoch 5
              0.60005,  # within 1e-4 of the best: not an improvement (wait 1)
              0.6,  # wait 2 -> x0.1 again from epoch 7
              0.7,  # improvement: the wait starts over
              0.2,  # wait 1
              0.2,  # wait 2 -> x0.1 again from epoch 10
              0.1, 0.1]  # wait 1, wait 2 (a decay no epoch uses any more)
    factors = [1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]
    assert_factors(lrs_per_epoch("plateau", epochs=11, warmup=0, kappas=kappas), factors)


def test_plateau_counts_epochs_during_warmup():
    # warm-up 2; kappa never improves after epoch 1: epochs 2 and 3 decay from epoch 4 on
    # (the decay after warm-up epoch 2 + epoch 3), epochs 4 and 5 again from epoch 6
    kappas = [0.4, 0.3, 0.3, 0.3, 0.3, 0.3]
    factors = [1 / 3, 2 / 3, 1.0, 0.1, 0.1, 0.01]
    assert_factors(lrs_per_epoch("plateau", epochs=6, warmup=2, kappas=kappas), factors)


def test_plateau_first_epoch_always_improves_on_minus_infinity():
    optimizer = make_optimizer()
    schedule = EpochSchedule(optimizer, "plateau", 5, 0)
    schedule.end_epoch(-1.0)
    assert (schedule.plateau_best, schedule.plateau_wait) == (-1.0, 0)


# --------------------------------------------------------------------------- resume


def roundtrip(state: dict) -> dict:
    """Through torch.save / torch.load(weights_only=True), as last_checkpoint.pt travels."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(("kind", "stop_after"), [("plateau", 3), ("plateau", 5),
                                                  ("cosine", 4), ("step", 2)])
def test_resume_from_state_dict_continues_identically(kind, stop_after):
    epochs, warmup = 9, 1
    kappas = [0.2, 0.4, 0.4, 0.4, 0.3, 0.5, 0.5, 0.5, 0.5]
    straight = lrs_per_epoch(kind, epochs, warmup, kappas)

    optimizer = make_optimizer()
    schedule = EpochSchedule(optimizer, kind, epochs, warmup)
    resumed = []
    for epoch in range(1, stop_after + 1):
        schedule.start_epoch(epoch)
        resumed.append([g["lr"] for g in optimizer.param_groups])
        schedule.end_epoch(kappas[epoch - 1])
    saved = roundtrip(schedule.state_dict())

    # A fresh optimizer, as a resumed run builds it: its groups start at the lr the
    # interrupted run had reached (a stale value), the base lr comes from the state.
    fresh = make_optimizer(bases=tuple(g["lr"] for g in optimizer.param_groups))
    schedule = EpochSchedule(fresh, kind, epochs, warmup)
    schedule.load_state_dict(saved)
    for epoch in range(stop_after + 1, epochs + 1):
        schedule.start_epoch(epoch)
        resumed.append([g["lr"] for g in fresh.param_groups])
        schedule.end_epoch(kappas[epoch - 1])
    assert resumed == straight  # exactly, not approximately


def test_state_dict_holds_the_plateau_progress():
    optimizer = make_optimizer()
    schedule = EpochSchedule(optimizer, "plateau", 10, 0)
    for kappa in (0.5, 0.4, 0.4, 0.45):
        schedule.end_epoch(kappa)
    state = roundtrip(schedule.state_dict())
    assert state == {"plateau_factor": pytest.approx(0.1), "plateau_best": 0.5,
                     "plateau_wait": 1, "base": list(BASES)}
    # a fresh schedule without the state would not have decayed
    assert EpochSchedule(make_optimizer(), "plateau", 10, 0).factor(5) == 1.0
