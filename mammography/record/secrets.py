"""Passwords in URLs never reach a record: ``scheme://user:secret@host`` → ``user:***@host``.

A study shared on a database server is named by a URL that may carry a
password (``tune --storage postgresql://user:secret@db/optuna``). summary.json,
config.yaml and run.log are meant to be shared, exported and committed, so
everything they record of the command line and the settings goes through
``mask_passwords`` first. A run resumed from such a record is told to give the
URL again (or to keep the password out of it: ``PGPASSWORD``, ``~/.pgpass``).
"""

from __future__ import annotations

import re

MASK = "***"
# scheme://user:password@ — the password is everything up to the last "@" before
# the host (a password may itself contain "@" or ":" when not percent-encoded).
_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<secret>[^\s/]*)@")


def mask_passwords(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    if "://" not in text or "@" not in text:
        return text
    return _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:{MASK}@", text)


def has_masked_password(text: str) -> bool:
    """Whether ``text`` is a URL whose password was masked when it was recorded."""
    return f":{MASK}@" in text and "://" in text
