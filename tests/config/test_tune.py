"""configs/tune.yaml is a settings file `tune --config` accepts, resolved as the CLI does."""

from pathlib import Path

import pytest
import yaml

from mammography.config.resolve import resolve_config
from mammography.config.tune import TuneConfig

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["tune.yaml", "demo.yaml"])
def test_the_shipped_config_files_resolve_for_tune(name, tmp_path):
    path = REPO / "configs" / name
    assert path.is_file() and not path.is_symlink()
    # The data they name is made by `make demo`; here a stand-in given on the command line.
    csv = tmp_path / "classificacao.csv"
    csv.write_text("AccessionNumber,Classification\n1,2\n")
    cfg = resolve_config(TuneConfig, path, {"csv": csv, "dicom_root": tmp_path})
    written = yaml.safe_load(path.read_text(encoding="utf-8"))
    for key, value in written.items():
        if key not in ("csv", "dicom_root"):
            assert str(getattr(cfg, key)) == str(value), key
    assert cfg.search_space is None  # the built-in space, checked in full by resolve_config


def test_command_line_options_override_tune_yaml(tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text("AccessionNumber,Classification\n1,2\n")
    cfg = resolve_config(TuneConfig, REPO / "configs" / "tune.yaml",
                         {"csv": csv, "dicom_root": tmp_path, "n_trials": 3})
    assert cfg.n_trials == 3 and cfg.engine == "optuna" and cfg.metric == "val_kappa"
