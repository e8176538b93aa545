"""configs/<dataset>-density.yaml: the public datasets' recipes are train-density settings."""

from pathlib import Path

import pytest
import yaml

from mammography.config.resolve import resolve_config
from mammography.config.train import TrainConfig

REPO = Path(__file__).resolve().parents[2]
RECIPES = {"vindr-mammo-density.yaml": ("vindr-mammo", "official"),
           "rsna-density.yaml": ("rsna", "all"),
           "cbis-ddsm-density.yaml": ("cbis-ddsm", "official")}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_each_recipe_resolves_with_the_users_files(name, tmp_path):
    path = REPO / "configs" / name
    csv = tmp_path / "published.csv"
    csv.write_text("a,b\n1,2\n")
    cfg = resolve_config(TrainConfig, path, {"csv": [csv], "dicom_root": tmp_path})
    written = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert "csv" not in written and "dicom_root" not in written  # the user's download
    for key, value in written.items():
        assert str(getattr(cfg, key)) == str(value), key
    assert (cfg.dataset, cfg.split) == RECIPES[name]
    assert cfg.csv == [csv]
