from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from mammography.config.core import (
    build_config,
    flag_name,
    load_yaml_config,
    setting,
    to_record,
)
from mammography.errors import ConfigError


@dataclass
class Demo:
    outdir: Path = setting(Path("outputs/x"), "where", record=False)
    epochs: int = setting(3, "epochs")
    lr: float = setting(1e-3, "learning rate")
    optimizer: Literal["adam", "sgd"] = setting("adam", "opt")
    amp: bool = setting(True, "amp")
    weights: Path | None = setting(None, "weights")
    runs: list[Path] = setting(default_factory=list, help="runs")

    def problems(self):
        return [f"--epochs must be positive, got {self.epochs}"] if self.epochs < 1 else []


def test_values_are_coerced_to_field_types():
    cfg = build_config(Demo, {"epochs": "5", "lr": "0.01", "amp": "false",
                              "weights": "w.pt", "runs": "r1", "optimizer": "sgd"})
    assert (cfg.epochs, cfg.lr, cfg.amp, cfg.weights, cfg.runs, cfg.optimizer) == (
        5, 0.01, False, Path("w.pt"), [Path("r1")], "sgd")


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        build_config(Demo, {"epochs": 1.5, "optimiser": "adam", "optimizer": "rmsprop",
                            "amp": "maybe"})
    text = info.value.render()
    assert "--epochs: expected an integer" in text
    assert "unknown setting 'optimiser'" in text and "did you mean 'optimizer'" in text
    assert "rmsprop" in text and "adam, sgd" in text
    assert "--amp: expected true or false" in text


def test_validation_hook_runs_after_types():
    with pytest.raises(ConfigError, match="Invalid settings") as info:
        build_config(Demo, {"epochs": 0})
    assert "--epochs must be positive, got 0" in info.value.render()


def test_record_leaves_out_settings_that_do_not_change_results():
    record = to_record(build_config(Demo, {}))
    assert "outdir" not in record and record["epochs"] == 3 and record["runs"] == []


def test_flag_name():
    assert flag_name(Demo, "lr") == "--lr"


def test_yaml_config_accepts_dashes_and_reports_syntax_errors(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("epochs: 7\nimg-size: 256\n")
    assert load_yaml_config(good) == {"epochs": 7, "img_size": 256}
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is not valid YAML \(line"):
        load_yaml_config(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_yaml_config(listing)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("module, name", [("train", "TrainConfig"), ("embed", "EmbedConfig"),
                                          ("evaluate", "EvalConfig")])
def test_every_command_refuses_a_num_workers_below_auto(module, name):
    import importlib

    config = getattr(importlib.import_module(f"mammography.config.{module}"), name)
    with pytest.raises(ConfigError) as caught:
        build_config(config, {"num_workers": -3})
    assert "--num-workers must be -1 (auto) or more, got -3" in caught.value.render()
