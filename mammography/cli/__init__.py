"""Command-line layer: options → config → one call. No work happens here."""
