"""mammography: reproducible breast-density research on screening mammograms.

Kept import-light on purpose: ``mammography --help`` must not pay for torch.
"""
