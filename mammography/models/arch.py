"""Which backbones exist: a check of ``--arch`` before any run starts.

timm is imported only when a command's settings are checked, never for
``--help``; torch comes with it, which is why the config layer calls this
lazily rather than at import.
"""

from __future__ import annotations


def unknown_arch(arch: str) -> str | None:
    """A message when ``arch`` is not a timm model, naming close matches; else None."""
    import timm

    if timm.is_model(arch):
        return None
    import difflib

    close = difflib.get_close_matches(arch.lower(), timm.list_models(), n=5, cutoff=0.6)
    hint = f"; similar: {', '.join(close)}" if close else ""
    return f"--arch {arch!r} is not a timm model{hint}"
