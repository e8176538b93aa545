"""Typed configs per command (dataclasses) and their YAML/CLI resolution."""
