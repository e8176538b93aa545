"""Option groups: every command that reads images exposes the same options, declared once.

The commands are walked as the CLI builds them (the Typer app), so a new command,
or one that declares a shared option again, is caught here.
"""

import dataclasses

import pytest
import typer.main

from mammography.cli.app import app
from mammography.config.backbone import BackboneWeightsOptions
from mammography.config.core import GROUPS, OptionGroup, setting
from mammography.config.data import (
    CacheOptions,
    ImageSourceOptions,
    InferenceOptions,
    LabelOptions,
    LoaderOptions,
    PreprocessOptions,
    SplitOptions,
)
from mammography.config.datacmd import DataCacheConfig, DataCheckConfig, DataPreviewConfig
from mammography.config.embed import EmbedConfig
from mammography.config.evaluate import EvalConfig
from mammography.config.predict import PredictConfig
from mammography.config.train import TrainConfig
from mammography.config.tune import TuneConfig

CONFIGS = {"train-density": TrainConfig, "tune": TuneConfig, "embed": EmbedConfig,
           "eval-export": EvalConfig, "predict": PredictConfig, "data check": DataCheckConfig,
           "data cache": DataCacheConfig, "data preview": DataPreviewConfig}
#: The groups each command that reads images has.
EXPECTED = {
    "train-density": {ImageSourceOptions, LabelOptions, SplitOptions, PreprocessOptions,
                      CacheOptions, LoaderOptions, BackboneWeightsOptions},
    "tune": {ImageSourceOptions, LabelOptions, SplitOptions, PreprocessOptions, CacheOptions,
             LoaderOptions, BackboneWeightsOptions},
    "embed": {ImageSourceOptions, LabelOptions, SplitOptions, PreprocessOptions, CacheOptions,
              InferenceOptions, BackboneWeightsOptions},
    "eval-export": {ImageSourceOptions, LabelOptions, SplitOptions, CacheOptions,
                    InferenceOptions},
    "predict": {ImageSourceOptions, CacheOptions, InferenceOptions},
    "data check": {ImageSourceOptions, LabelOptions, SplitOptions, PreprocessOptions,
                   CacheOptions},
    "data cache": {ImageSourceOptions, LabelOptions, SplitOptions, PreprocessOptions,
                   CacheOptions},
    "data preview": {ImageSourceOptions, LabelOptions, SplitOptions, PreprocessOptions,
                     CacheOptions},
}
GROUP_CLASSES = (ImageSourceOptions, LabelOptions, SplitOptions, PreprocessOptions,
                 CacheOptions, LoaderOptions, InferenceOptions, BackboneWeightsOptions)


def _commands():
    """(name, click command) for every command of the CLI, sub-commands included."""
    pending = [("", typer.main.get_command(app))]
    while pending:
        prefix, command = pending.pop()
        if hasattr(command, "commands"):
            pending += [(f"{prefix} {name}".strip(), sub) for name, sub in
                        command.commands.items()]
        else:
            yield prefix, command


def _options(command):
    return {p.opts[0]: p for p in command.params if p.param_type_name == "option"}


def _own_fields(group):
    """The options a group declares itself (not those it inherits)."""
    inherited = {f.name for base in group.__bases__ if dataclasses.is_dataclass(base)
                 for f in dataclasses.fields(base)}
    return [f for f in dataclasses.fields(group) if f.name not in inherited]


def _flag(f):
    return "--" + f.name.replace("_", "-")


COMMANDS = dict(_commands())


def test_every_command_that_reads_images_is_known_here():
    reading = {name for name, command in COMMANDS.items() if "--dicom-root" in _options(command)}
    assert reading == set(CONFIGS)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_a_command_has_exactly_its_groups_with_their_help_and_default(name):
    options = _options(COMMANDS[name])
    for group in GROUP_CLASSES:
        has = issubclass(CONFIGS[name], group)
        assert has == any(issubclass(expected, group) for expected in EXPECTED[name]), \
            (name, group.__name__)
        for f in _own_fields(group):
            flag = _flag(f)
            if not has:
                # a training batch is train-density's own option, not an inference batch
                assert flag not in options or flag == "--batch-size", (name, flag)
                continue
            assert flag in options, (name, flag)
            assert options[flag].help == f.metadata["help"], (name, flag)
            default = getattr(options[flag].default, "value", options[flag].default)
            # A repeatable option (a list, --csv) shows no default: an empty list.
            expected = (f.default_factory() or None
                        if f.default is dataclasses.MISSING else f.default)
            assert str(default) == str(expected), (name, flag)


def test_a_shared_option_reads_the_same_in_every_command():
    """Across the commands that read images, one flag has one help text: only the
    options whose meaning is the command's own differ (what it writes, its model,
    a training batch against an inference batch, what --resume continues: a training
    run or a search)."""
    # --json: each command's own report; --ray-address: train/tune's cluster for
    # --cv-engine/--engine ray (default: a local Ray instance), the data commands' cluster
    # to spread their images over (default: no Ray, this machine only).
    own_meaning = {"--outdir", "--seed", "--arch", "--run", "--batch-size", "--json",
                   "--ray-address", "--resume"}
    texts: dict[str, set[str]] = {}
    for name in CONFIGS:
        for flag, option in _options(COMMANDS[name]).items():
            texts.setdefault(flag, set()).add(option.help)
    differing = {flag for flag, helps in texts.items() if len(helps) > 1}
    assert differing <= own_meaning, differing - own_meaning


def test_every_option_of_these_commands_names_its_group():
    for name, config in CONFIGS.items():
        for f in dataclasses.fields(config):
            assert f.metadata.get("group") in GROUPS, (name, f.name)


@pytest.mark.parametrize(("settings", "message"), [
    ({"workers": -1}, "--workers must be 0 (all cores) or more"),
    ({"max_bad_fraction": 1.5}, "--max-bad-fraction must be between 0 and 1"),
])
def test_a_group_checks_its_options_in_every_command_that_has_it(tmp_path, settings, message):
    csv = tmp_path / "labels.csv"
    csv.write_text("AccessionNumber,Classification\n1,2\n")
    for name, config in CONFIGS.items():
        cfg = config(csv=csv, **settings)
        assert any(message in problem for problem in cfg.problems()), name


@pytest.mark.parametrize("config", [TrainConfig, EmbedConfig, EvalConfig, PredictConfig])
def test_loader_options_are_checked_wherever_they_are_inherited(config):
    assert "--num-workers must be -1 (auto) or more, got -2" in config(num_workers=-2).problems()


@pytest.mark.parametrize("config", [EmbedConfig, EvalConfig, PredictConfig])
def test_an_inference_batch_is_checked(config):
    assert "--batch-size must be at least 1, got 0" in config(batch_size=0).problems()


def test_a_labelled_command_needs_its_csv_and_predict_needs_images():
    assert "--csv is required: the labels CSV (e.g. classificacao.csv)" in \
        DataCheckConfig().problems()
    assert "--csv FILE or --dicom-root DIR is required: the images to score" in \
        PredictConfig().problems()
    assert not any("--csv" in p for p in EvalConfig().problems())  # its own split instead


def test_group_problems_runs_each_inherited_check_once():
    calls = []

    @dataclasses.dataclass
    class First(OptionGroup):
        a: int = setting(0, "a", group="data")

        def own_problems(self):
            calls.append("first")
            return ["first"]

    @dataclasses.dataclass
    class Second(First):
        b: int = setting(0, "b", group="model")

        def own_problems(self):
            calls.append("second")
            return ["second"]

    @dataclasses.dataclass
    class Command(Second, CacheOptions):
        pass

    assert Command(workers=-1).group_problems() == [
        "--workers must be 0 (all cores) or more, got -1", "first", "second"]
    assert calls == ["first", "second"]


def test_an_unknown_group_is_refused():
    with pytest.raises(ValueError, match="not one of data, model"):
        setting(0, "x", group="misc")
