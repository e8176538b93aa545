"""`--help` of every command: option groups as panels, examples that are README's (and
so run by tests/test_readme.py), no Python types where nothing is typed, and what it
says agrees with the README."""

from __future__ import annotations

import re
import shlex

import pytest
import typer
from typer.testing import CliRunner

from mammography.cli.app import app
from mammography.config.core import GROUP_TITLES, GROUPS
from tests.helpers import REPO
from tests.readme_examples import example_key, readme_examples

ROOT = typer.main.get_command(app)
WIDTH = 80  # the help must read on an 80-column terminal


def commands(group=ROOT, path=()):
    """(path, click command) of every leaf command, e.g. (("runs", "list"), cmd)."""
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = dict(commands())


def help_text(path) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH)},
                                terminal_width=WIDTH)
    assert result.exit_code == 0, result.output
    return result.output


def examples_of(command) -> list[str]:
    """The command lines of a command's epilog (each with its continuation lines)."""
    lines = [line[2:] for line in (command.epilog or "").splitlines() if line.startswith("  ")]
    found, pending = [], []
    for line in lines:
        pending.append(line)
        if not line.rstrip().endswith("\\"):
            found.append("\n".join(pending))
            pending = []
    return found


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_shows_two_readme_examples_that_parse(path):
    command = COMMANDS[path]
    examples = examples_of(command)
    assert len(examples) == 2, f"{' '.join(path)}: give two examples (cli/app.py)"
    readme = {example.key for example in readme_examples()}
    for example in examples:
        text = example.replace("\\[", "[")  # as typed: rich's markup escape undone
        assert example_key(text) in readme, f"not a README example: {text}"
        for line in text.splitlines():
            assert len(line) <= WIDTH - 3, f"wraps on an {WIDTH}-column terminal: {line}"
        words = shlex.split(example_key(text))
        assert words[:1 + len(path)] == ["mammography", *path]
        # Options and choices are the command's own (click parses, nothing runs).
        command.make_context(" ".join(path), words[1 + len(path):])


@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_help_reads_without_python_types(path):
    text = help_text(path)
    for odd in ("<bool>", "<list[", "<str>", "<int>", "<float>", "<Path>", "--no-yes",
                "--no-dry-run", "--no-json"):
        assert odd not in text, f"{' '.join(path)} --help shows {odd}"
    assert "Examples" in text and "mammography " + " ".join(path) in text


def test_train_density_options_are_grouped_in_panels_in_order():
    text = help_text(("train-density",))
    titles = re.findall(r"^╭─ (\w+) ─", text, re.M)
    assert titles == ["Options", *(GROUP_TITLES[g] for g in GROUPS)]
    panel = text.split("╭─ Data ─")[1].split("╰")[0]
    assert "--csv" in panel and "--img-size" in panel and "--epochs" not in panel
    assert "--epochs" in text.split("╭─ Training ─")[1].split("╰")[0]


def test_a_flag_of_a_command_without_config_file_is_one_sided(tmp_path):
    text = help_text(("runs", "clean"))
    assert re.search(r"│ --yes\s+Really delete", text)
    assert "--index" in text and "--no-index" in text  # on by default: both sides stay
    assert "ROOT" in text and "list[Path]" not in text


def test_tune_resume_says_what_resuming_a_search_does():
    tune = " ".join(help_text(("tune",)).split())
    train = " ".join(help_text(("train-density",)).split())
    assert "last_checkpoint.pt" in train and "Continue a killed or finished search" in tune
    assert "last_checkpoint.pt" not in tune.split("--resume")[1].split("--based-on")[0]


def test_help_and_readme_agree():
    readme = " ".join((REPO / "README.md").read_text(encoding="utf-8").split())
    data = " ".join(help_text(("data", "cache")).replace("│", "").split())
    factor = re.search(r"about ([\d.]+)x less CPU", data).group(1)
    assert f"about {factor}x less CPU for full-field images" in readme
    assert "configs/tune.yaml" in readme and (REPO / "configs" / "tune.yaml").is_file()
    assert not (REPO / "configs" / "tune.yaml").is_symlink()
    calibrate = " ".join(help_text(("eval-export",)).replace("│", "").split())
    for text in (calibrate, readme):
        assert "accuracy and kappa do not change" not in text
    assert "breast and exam calls (from mean probabilities)" in calibrate
    assert "breast- and exam-level accuracy and kappa can change" in readme


@pytest.mark.parametrize("path", [(), ("data",), ("runs",)], ids=lambda p: " ".join(p) or "-")
def test_the_command_groups_read_without_python_types(path):
    text = help_text(path)
    assert "<bool>" not in text and "Commands" in text
    assert "--version" in text or path
