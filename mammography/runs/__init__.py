"""`mammography runs ...`: read, compare, check, reproduce, tidy and export run directories.

These commands read what runs left behind (the contract of ``mammography.record.contract``)
and never create a run directory themselves.
"""
