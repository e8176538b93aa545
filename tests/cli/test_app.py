"""The CLI surface: fast help without torch, options → config, clear errors."""

import subprocess
import sys

from tests.helpers import child_env


def test_help_is_fast_path_without_torch():
    code = ("import sys, runpy\nsys.argv = ['mammography', '--help']\n"
            "try:\n    runpy.run_module('mammography', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'numpy', 'pydicom', 'timm', 'git', 'yaml') "
            "if m in sys.modules]\nprint('HEAVY', heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=child_env())
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr
    assert "synth" in proc.stdout


def test_subcommand_help_lists_options(cli):
    proc = cli("synth", "--help")
    assert proc.returncode == 0
    for option in ("--out", "--exams", "--seed", "--size", "--compression", "--class5"):
        assert option in proc.stdout


def test_version(cli):
    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.startswith("mammography ")


def test_unknown_option_is_exit_2_without_traceback(cli):
    proc = cli("synth", "--exmas", "3")
    assert proc.returncode == 2
    assert "No such option" in proc.stderr and "Traceback" not in proc.stderr


def test_invalid_values_are_all_reported_at_once(cli, tmp_path):
    proc = cli("synth", "--out", tmp_path / "d", "--exams", "0", "--size", "big")
    assert proc.returncode == 2
    assert "--exams must be at least 1" in proc.stderr
    assert "--size must look like 320x256" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "d").exists()


def test_bad_choice_names_the_choices(cli, tmp_path):
    proc = cli("synth", "--out", tmp_path / "d", "--compression", "zip")
    assert proc.returncode == 2
    assert "none" in proc.stderr and "rle" in proc.stderr and "j2k" in proc.stderr


def test_synth_end_to_end_and_refuses_to_overwrite(cli, tmp_path):
    out = tmp_path / "synthetic"
    proc = cli("synth", "--out", out, "--exams", "6", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert (out / "classificacao.csv").read_text().startswith("AccessionNumber,Classification")
    files = sorted((out / "archive").rglob("*.dcm"))
    assert len(files) >= 12
    before = {p: p.stat().st_mtime_ns for p in files}
    again = cli("synth", "--out", out, "--exams", "6")
    assert again.returncode == 2
    assert str(out) in again.stderr and "Traceback" not in again.stderr
    assert {p: p.stat().st_mtime_ns for p in files} == before


def test_yaml_config_fills_settings_and_command_line_overrides_it(cli, tmp_path):
    config = tmp_path / "synth.yaml"
    config.write_text("exams: 3\nseed: 5\nsize: 128x96\n")
    # synth has no --config; use the resolver the run commands use
    from mammography.cli.execute import resolve_config
    from mammography.config.synth import SynthConfig

    resolved = resolve_config(SynthConfig, config, {"seed": 9})
    assert (resolved.exams, resolved.seed, resolved.size) == (3, 9, "128x96")


def test_run_command_records_yaml_values_and_overrides(cli, tmp_path):
    """Through the real CLI: YAML fills settings, options typed override, defaults don't."""
    (tmp_path / "labels.csv").write_text("path,label\n")
    config = tmp_path / "train.yaml"
    config.write_text("epochs: 7\nlr: 0.01\nimg_size: 96\n")
    proc = cli("train-density", "--config", config, "--csv", tmp_path / "labels.csv",
               "--lr", "0.5", "--epochs", "0", "--outdir", tmp_path / "out")
    # epochs 0 from the command line overrides the YAML's 7 and is reported
    assert proc.returncode == 2
    assert "--epochs must be at least 1, got 0" in proc.stderr
    assert not (tmp_path / "out").exists()
