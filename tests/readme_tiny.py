"""The `mammography` command of the README docs test: the real CLI, at tiny sizes.

tests/test_readme.py puts this (as ``mammography``) first on PATH and runs the
README's examples as written. It changes sizes only, never what an example does:
images 64 px high (``512x256`` -> ``64x32``), a tenth of the epochs (at least 1),
timm's test model in place of ``efficientnet_b0``, at most 2 trials, 24 exams,
50 bootstrap resamples, 8 preview images; a ``--config FILE`` is replaced by a copy
with the same changes. ``--resume`` keeps the settings of the run it continues (an
``--epochs`` given is scaled like any other). Everything else -- commands, paths,
options, outputs -- is the example's own.

Usage: ``readme_tiny.py ARGS...`` runs ``python -m mammography ARGS'`` (exit code
passed through); ``MAMMOGRAPHY_TINY_DIR`` is where config copies are written.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

IMAGE_HEIGHT = 64
ARCHES = {"efficientnet_b0": "test_efficientnet", "convnext_tiny": "test_convnext"}
PREPROCESSING = {"train-density", "tune", "embed", "check", "cache", "preview"}
TRAINING = {"train-density", "tune"}


def tiny_image_size(value: str) -> str:
    """``512`` -> ``64``; ``1024x512`` -> ``64x32`` (the aspect kept, sides >= 32)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(value))
    if not match:
        return str(value)
    if not match.group(2):
        return str(IMAGE_HEIGHT)
    height, width = int(match.group(1)), int(match.group(2))
    return f"{IMAGE_HEIGHT}x{max(32, round(IMAGE_HEIGHT * width / height))}"


def tiny_synth_size(value: str) -> str:
    """A synthetic image at most 256 px on its longer side (and 64 on its shorter)."""
    height, width = (int(v) for v in re.split(r"[xX]", value))
    scale = min(1.0, 256 / max(height, width))
    return f"{max(64, round(height * scale))}x{max(64, round(width * scale))}"


def tiny_epochs(value: str) -> str:
    return str(max(1, int(value) // 10))


#: option -> how its value is made tiny, per command ("*": every command).
REWRITE = {
    "--img-size": tiny_image_size,
    "--epochs": tiny_epochs,
    "--arch": lambda v: ARCHES.get(v, v),
    "--n-trials": lambda v: str(min(int(v), 2)),
    "--exams": lambda v: str(min(int(v), 24)),
    "--size": tiny_synth_size,
    "--bootstrap": lambda v: str(min(int(v), 50)),
    "--limit": lambda v: str(min(int(v), 8)),
}
YAML_KEYS = {"img_size": tiny_image_size, "epochs": tiny_epochs,
             "arch": lambda v: ARCHES.get(v, v), "n_trials": lambda v: str(min(int(v), 2))}


def command_of(args: list[str]) -> str:
    """``train-density``, or the subcommand of ``data``/``runs`` (``check``, ``list``)."""
    words = [a for a in args if not a.startswith("-")]
    if words and words[0] in ("data", "runs") and len(words) > 1:
        return words[1]
    return words[0] if words else ""


def tiny_config(path: str) -> str:
    """A copy of the YAML file ``path`` with its sizes made tiny (in MAMMOGRAPHY_TINY_DIR)."""
    import yaml

    values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    for key, value in list(values.items()):
        rewrite = YAML_KEYS.get(str(key).replace("-", "_"))
        if rewrite is not None:
            text = rewrite(str(value))
            values[key] = int(text) if text.isdigit() else text
    folder = Path(os.environ.get("MAMMOGRAPHY_TINY_DIR", "."))
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / Path(path).name
    copy.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    return str(copy)


def tiny_args(args: list[str]) -> list[str]:
    command = command_of(args)
    out = list(args)
    given = set()
    for i, arg in enumerate(out[:-1]):
        if arg == "--limit" and command != "preview":
            continue  # `runs list --limit` is a number of rows, not a size
        if arg in REWRITE and not out[i + 1].startswith("--"):
            given.add(arg)
            out[i + 1] = REWRITE[arg](out[i + 1])
        elif arg == "--config":
            given.add(arg)
            out[i + 1] = tiny_config(out[i + 1])
    if "--resume" in args or command not in PREPROCESSING | {"eval-export"}:
        return out
    from_file = "--config" in given
    if command in PREPROCESSING and "--img-size" not in given and not from_file:
        out += ["--img-size", str(IMAGE_HEIGHT)]
    if command in TRAINING and not from_file:
        if "--arch" not in given:
            out += ["--arch", "test_efficientnet"]
        if not {"--pretrained", "--no-pretrained", "--weights"} & set(args):
            out += ["--no-pretrained"]
        if "--epochs" not in given:
            out += ["--epochs", "1"]
        if command == "tune" and "--n-trials" not in given:
            out += ["--n-trials", "2"]
    if command == "preview" and "--limit" not in given:
        out += ["--limit", "8"]
    if command == "eval-export" and "--bootstrap" not in given:
        out += ["--bootstrap", "50"]
    return out


def main() -> int:
    args = tiny_args(sys.argv[1:])
    os.execv(sys.executable, [sys.executable, "-m", "mammography", *args])
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
