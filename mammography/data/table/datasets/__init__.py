"""Public datasets read as their publishers ship them (``--dataset NAME``).

One module per dataset - its files and columns, label rule, folder layout,
what a patient, exam and breast are, its official split - named after the
dataset (``vindr-mammo`` -> ``vindr_mammo.py``) and holding a ``DATASET``
object that follows ``published.PublishedDataset``. The names are the one
table ``config.data.DATASETS`` (which ``--dataset`` offers); adding a dataset
is its module plus its name there.

* ``published`` - what a dataset is to the reader, and what the modules share
  (recognising files by their columns, exclusions said once per reason, the
  folder index that finds a partial download's missing files, the record);
* ``vindr_mammo``, ``rsna``, ``cbis_ddsm`` (with ``tcia_layout``: the TCIA
  download's folders by Study/Series UID), ``inbreast``, ``embed``.
"""

from __future__ import annotations

import importlib

from mammography.config.data import DATASETS
from mammography.data.table.datasets.published import PublishedDataset
from mammography.errors import ConfigError


def published_dataset(name: str) -> PublishedDataset:
    """The dataset ``--dataset name`` names (its module's ``DATASET``)."""
    if name not in DATASETS:
        raise ConfigError(f"--dataset {name!r} is not one of {', '.join(DATASETS)}.")
    module = importlib.import_module(f"{__name__}.{name.replace('-', '_')}")
    return module.DATASET
