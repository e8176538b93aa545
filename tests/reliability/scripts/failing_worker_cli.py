"""The mammography CLI with DataLoader workers that fail: ``ARGS...`` as for the CLI.

Every item fetched in a DataLoader worker raises OSError (as an unreadable cache
file would inside ``__getitem__``); items loaded in the main process work. Workers
are forked, so they inherit the patch.
"""

import sys

import torch.utils.data

from mammography.data import dataset

_original = dataset.CachedImageDataset.__getitem__


def _failing(self, index):
    if torch.utils.data.get_worker_info() is not None:
        raise OSError(f"simulated unreadable cache entry for item {index}")
    return _original(self, index)


dataset.CachedImageDataset.__getitem__ = _failing

from mammography.cli.app import main  # noqa: E402 - after the patch

sys.argv = ["mammography", *sys.argv[1:]]
main()
