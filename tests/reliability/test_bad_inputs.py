"""The bad-input matrix, through the real CLI: every case ends with exit 2 and a
message naming the file/row/option and the fix, or with a clean run that reports
and manifests the exclusion - never with a traceback.

Cases covered elsewhere (by reference, see docs/reliability.md): missing --csv
(tests/data/test_audit.py), unknown --arch (tests/engine/test_train_density.py),
unknown option (tests/cli/test_app.py), permission-denied --outdir
(tests/record/test_rundir.py, skipped as root), a checkpoint of another
architecture / corrupt / pickle payload in best_model.pt for eval-export
(tests/engine/test_embed_eval.py).
"""

from __future__ import annotations

import pickle
import resource
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.reliability import common
from tests.reliability.common import (
    SCRIPTS,
    TINY,
    cli_args,
    copy_dataset,
    data_args,
    log_lines,
    no_traceback,
    read_json,
    rel_env,
    runs_list,
)


# ----------------------------------------------------------------- CSV and options
@dataclass
class Case:
    """One `mammography data check` call and what it must end with."""

    rc: int
    messages: list[str]  # all must appear in the output (stdout + stderr)
    reasons: list[str] = field(default_factory=list)  # exclusions in the --json audit
    args: list[str] = field(default_factory=list)


def _rows(dataset: Path) -> tuple[str, list[list[str]]]:
    header, *lines = (dataset / "classificacao.csv").read_text().splitlines()
    return header, [line.split(",") for line in lines]


def _join(header: str, rows: list[list[str]], sep: str = ",", end: str = "\n") -> str:
    return end.join([header.replace(",", sep)] + [sep.join(r) for r in rows]) + end


def build_csv_cases(dataset: Path, work: Path) -> dict[str, Case]:
    """Write every case's inputs under ``work``; the DICOM tree is the shared one."""
    header, rows = _rows(dataset)
    text = _join(header, rows)
    root = dataset / "archive"
    cases: dict[str, Case] = {}

    def add(name: str, content: bytes | str | None, case: Case, *, root_arg=root) -> None:
        folder = work / name
        folder.mkdir()
        csv = folder / "labels.csv"
        if isinstance(content, str):
            csv.write_text(content, encoding="utf-8")
        elif content is not None:
            csv.write_bytes(content)
        args = ["--csv", str(csv)]
        if root_arg is not None:
            args += ["--dicom-root", str(root_arg)]
        # Headers only: these cases are about the CSV (pixels: the zoo below).
        case.args = args + ["--img-size", "64", "--no-decode", "--json",
                            str(folder / "audit.json")] + case.args
        cases[name] = case

    add("empty", "", Case(2, ["labels.csv is empty", "needs a header row"]))
    add("header_only", header + "\n", Case(2, ["labels.csv has a header but no data rows"]))
    add("utf8_bom", ("\ufeff" + text).encode("utf-8"), Case(0, ["Verdict: usable"]))
    add("semicolon", _join(header, rows, ";"), Case(0, ["Verdict: usable"]))
    add("tab", _join(header, rows, "\t"), Case(0, ["Verdict: usable"]))
    latin = _join(header + ",Nota", [r + ["não"] for r in rows]).encode("latin-1")
    add("latin1", latin, Case(0, ["is not UTF-8; read it as Latin-1", "Verdict: usable"]))
    add("utf16_bom", text.encode("utf-16"), Case(0, ["Verdict: usable"]))
    add("cr_line_endings", _join(header, rows, end="\r"), Case(0, ["Verdict: usable"]))
    add("binary", bytes(range(256)) * 8, Case(2, ["labels.csv contains NUL bytes",
                                                  "Save it as UTF-8 CSV"]))
    add("oversized_field", header + "\n" + rows[0][0] + ',"' + "x" * 200_000 + '",P\n',
        Case(2, ["labels.csv line", "is not valid CSV", "field larger than field limit"]))
    add("missing_columns", text.replace("Classification", "Density"),
        Case(2, ["have AccessionNumber but no Classification column",
                 "Rename its density column to Classification"]))
    add("no_layout", text.replace("AccessionNumber", "Exam").replace("Classification", "D"),
        Case(2, ["neither AccessionNumber,Classification", "--path-column NAME"]))
    bad = [list(r) for r in rows]
    for row, label in zip(bad, ["X", "7", "-1", "2.5", "", "0"], strict=False):
        row[1] = label
    add("bad_labels", _join(header, bad),
        Case(0, ["WARNING: labels.csv line 2", "unknown label 'X'"],
             reasons=[f"unknown label {v!r}" for v in ["X", "7", "-1", "2.5", "", "0"]]))
    flipped = "1" if rows[0][1] != "1" else "2"
    add("conflicting_duplicate", _join(header, rows + [[rows[0][0], flipped, rows[0][2]]]),
        Case(0, ["conflicting labels"], reasons=["conflicting labels"]))
    add("same_label_duplicate", _join(header, rows + [rows[0]]),
        Case(0, ["listed 2 times with the same label; using it once"]))
    add("accession_without_images", _join(header, rows + [["99999999", "2", "P99"]]),
        Case(0, ["no DICOM files under"], reasons=["no DICOM files under"]))
    add("accession_not_a_folder",
        _join(header, rows + [[".", "2", "P97"], ["..", "3", "P98"], ["../archive", "1", "P99"]]),
        Case(0, ["not a plain folder name"], reasons=["not a plain folder name"] * 3))
    add("accession_too_long", _join(header, rows + [["A" * 300, "2", "P99"]]),
        Case(0, ["cannot list"], reasons=["cannot list"]))
    image = next(root.rglob("*.dcm"))
    add("generic_path_too_long", f"path,label\n{'x' * 300}.dcm,2\n{image},1\n",
        Case(0, ["unusable path"], reasons=["unusable path"]))
    add("all_rows_excluded", _join(header, [[r[0], "Q", r[2]] for r in rows]),
        Case(2, ["No usable images in", "labels.csv", "Check the CSV labels"]))
    add("dicom_root_missing_option", text,
        Case(2, ["--dicom-root", "does not exist or is not a folder"]),
        root_arg=work / "no_such_root")
    add("dicom_root_missing_default", text,
        Case(2, ["DICOM root", "(the default: archive/ next to labels.csv) does not exist",
                 "Pass --dicom-root DIR"]),
        root_arg=None)
    add("csv_is_a_folder", None, Case(2, ["--csv", "does not exist or is not a file"]))
    (work / "csv_is_a_folder" / "labels.csv").mkdir()
    for name, yaml_text, messages in (
            ("yaml_syntax", "img_size: [64\n", ["is not valid YAML (line", "Fix the syntax"]),
            ("yaml_not_a_mapping", "- 1\n- 2\n", ["must be a mapping of setting: value"]),
            ("yaml_unknown_key", "img_sise: 64\n", ["unknown setting 'img_sise'",
                                                     "did you mean 'img_size'"])):
        config = work / f"{name}.yaml"
        config.write_text(yaml_text)
        add(name, text, Case(2, [config.name, *messages], args=["--config", str(config)]))
    add("unknown_option", text, Case(2, ["No such option: --frobnicate"],
                                     args=["--frobnicate"]))
    return cases


CSV_CASES = ["empty", "header_only", "utf8_bom", "semicolon", "tab", "latin1", "utf16_bom",
             "cr_line_endings", "binary", "oversized_field", "missing_columns", "no_layout",
             "bad_labels", "conflicting_duplicate", "same_label_duplicate",
             "accession_without_images", "accession_not_a_folder", "accession_too_long",
             "generic_path_too_long", "all_rows_excluded", "dicom_root_missing_option",
             "dicom_root_missing_default", "csv_is_a_folder", "yaml_syntax",
             "yaml_not_a_mapping", "yaml_unknown_key", "unknown_option"]


@pytest.fixture(scope="module")
def csv_results(small_dataset, tmp_path_factory):
    """Every CSV/option case, run concurrently (each is a short `data check`)."""
    work = tmp_path_factory.mktemp("csv_cases")
    cases = build_csv_cases(small_dataset, work)
    assert sorted(cases) == sorted(CSV_CASES)
    env = rel_env(work / "cache")

    def run(name: str) -> subprocess.CompletedProcess:
        return subprocess.run(cli_args("data", "check", *cases[name].args),
                              capture_output=True, text=True, env=env, timeout=300)

    with ThreadPoolExecutor(max_workers=4) as pool:
        procs = dict(zip(CSV_CASES, pool.map(run, CSV_CASES), strict=True))
    return {name: (cases[name], procs[name], work / name / "audit.json") for name in cases}


@pytest.mark.parametrize("name", CSV_CASES)
def test_csv_and_option_cases(csv_results, name):
    case, proc, audit = csv_results[name]
    output = proc.stdout + proc.stderr
    assert proc.returncode == case.rc, output[-3000:]
    assert no_traceback(proc), output[-3000:]
    for message in case.messages:
        assert message in output, (message, output[-3000:])
    if case.rc == 0:
        report = read_json(audit)
        assert report["usable"] and report["images"] > 0
        reasons = [e["reason"] for e in report["exclusions"]]
        for wanted in case.reasons:
            assert sum(wanted in r for r in reasons) >= case.reasons.count(wanted), \
                (wanted, reasons)
        # Rows that must not be excluded are not: only the named problems are.
        assert len(report["exclusions"]) == len(case.reasons), reasons


def test_rows_of_odd_accessions_never_claim_other_exams(csv_results):
    """'.', '..' and '../archive' would have made root/<accession> the root itself:
    every image of the dataset labelled by that one row (and '/' a file-system walk)."""
    _case, _proc, audit = csv_results["accession_not_a_folder"]
    report = read_json(audit)
    clean = read_json(csv_results["utf8_bom"][2])
    assert report["images"] == clean["images"]
    assert report["class_distribution_images"] == clean["class_distribution_images"]


# --------------------------------------------------------------------- DICOM files
ZOO = {  # file (relative to the archive) -> the reason its exclusion must give
    "notes.dcm": "not a DICOM file",
    "zero.dcm": "empty file (0 bytes)",
    "truncated.dcm": "truncated pixel data",
    "no_pixels.dcm": "no pixel data",
    "mpeg2.dcm": "no decoder for transfer syntax MPEG2",
    "absurd_size.dcm": "implausibly large",
    "absurd_size_rle.dcm": "implausibly large",
    "zero_rows.dcm": "bad image size 0 x",
    "jpegls_size_mismatch.dcm": "the JPEG-LS codestream declares 64 x 64 pixels but the "
                                "header's Rows x Columns is 170 x 64: refused before decoding",
    "rle_panic.dcm": "cannot decode RLE Lossless",
}


@pytest.fixture(scope="module")
def zoo(small_dataset, tmp_path_factory):
    """The small dataset plus one file of every kind of damage, a 'For Processing'
    image, a full-field 4096 x 3328 image, an orphan folder, and row-level problems."""
    data = copy_dataset(small_dataset, tmp_path_factory.mktemp("zoo") / "data")
    exams = sorted(p for p in (data / "archive").iterdir() if p.is_dir())
    bad: dict[str, Path] = {}

    def views(i: int) -> list[Path]:
        return sorted(exams[i].glob("*.dcm"))

    (exams[0] / "notes.dcm").write_text("not a DICOM file, just notes\n")
    (exams[0] / "zero.dcm").touch()
    bad["notes.dcm"], bad["zero.dcm"] = exams[0] / "notes.dcm", exams[0] / "zero.dcm"
    for i, (name, damage) in enumerate([("truncated.dcm", common.truncate_pixels),
                                        ("no_pixels.dcm", common.drop_pixels),
                                        ("mpeg2.dcm", common.to_mpeg2),
                                        ("absurd_size.dcm",
                                         lambda p: common.claim_size(p, 60000, 60000)),
                                        ("zero_rows.dcm", lambda p: common.claim_size(p, 0, 96))],
                                       start=1):
        target = exams[i] / name
        views(i)[0].rename(target)
        bad[name] = damage(target)
    bad["absurd_size_rle.dcm"] = common.claim_size(
        common.small_mammogram(exams[6] / "absurd_size_rle.dcm", compression="rle"),
        60000, 60000)
    for name, make, exam in (("jpegls_size_mismatch.dcm", common.jpegls_size_mismatch, 7),
                             ("rle_panic.dcm", common.rle_panic, 8)):
        path = make(exams[exam] / name)
        if path is not None:
            bad[name] = path
    processing = views(9)[0]
    common.for_processing(processing)
    big = common.full_field(exams[10] / "full_field.dcm")
    orphan = data / "archive" / "ORPHAN1"
    orphan.mkdir()
    shutil.copy(views(11)[0], orphan / "x.dcm")
    # Row-level problems, on exams whose files are all fine (exams 12 and 13).
    header, rows = _rows(data)
    row = {r[0]: r for r in rows}
    twelve, thirteen = row[exams[12].name], row[exams[13].name]
    flipped = "1" if twelve[1] != "1" else "2"
    rows += [[twelve[0], flipped, twelve[2]], ["99999999", "2", "P99"], [".", "3", "P98"]]
    thirteen[1] = "Q"
    (data / "classificacao.csv").write_text(_join(header, rows))
    row_reasons = ["conflicting labels", "no DICOM files under", "not a plain folder name",
                   "unknown label 'Q'", "folder has no CSV row"]
    return {"data": data, "bad": bad, "processing": processing, "big": big,
            "row_reasons": row_reasons}


@pytest.fixture(scope="module")
def zoo_check(zoo, tmp_path_factory):
    work = tmp_path_factory.mktemp("zoo_check")
    proc = subprocess.run(cli_args("data", "check", *data_args(zoo["data"]), "--img-size", "64",
                                   "--workers", "2", "--json", work / "audit.json"),
                          capture_output=True, text=True, env=rel_env(work / "cache"),
                          timeout=600)
    return proc, read_json(work / "audit.json") if (work / "audit.json").exists() else None


def test_damaged_files_are_reported_not_fatal(zoo_check):
    proc, report = zoo_check
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert no_traceback(proc), proc.stderr[-3000:]
    assert "Verdict: usable" in proc.stdout


@pytest.mark.parametrize("name", sorted(ZOO))
def test_each_damaged_file_is_excluded_with_its_reason(zoo, zoo_check, name):
    if name not in zoo["bad"]:
        pytest.skip(f"{name}: cannot be made here (pydicom test file or decoder bug absent)")
    _proc, report = zoo_check
    found = [e["reason"] for e in report["exclusions"]
             if Path(str(e.get("path"))).name == name]
    assert len(found) == 1 and ZOO[name] in found[0], (name, found)


def test_for_processing_full_field_and_row_problems(zoo, zoo_check):
    proc, report = zoo_check
    assert report["for_processing"] == 1
    assert "'For Processing'" in proc.stdout + proc.stderr
    excluded = {Path(str(e.get("path"))).name for e in report["exclusions"]}
    assert zoo["big"].name not in excluded and zoo["processing"].name not in excluded
    reasons = [e["reason"] for e in report["exclusions"]]
    for wanted in zoo["row_reasons"]:
        assert any(wanted in r for r in reasons), (wanted, reasons)


# --------------------------------------------------- cases that need train-density
# Each starts a Python with torch (~5 s here), so they all run at once in one
# fixture, three at a time; the tests below only read what each left behind.
class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _file_size_limit(limit: int):
    """preexec_fn: writes past ``limit`` bytes fail with EFBIG (SIGXFSZ ignored) -
    a full disk, as the process sees it, for every file it writes."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@dataclass
class TrainCase:
    args: list
    limit: int | None = None  # RLIMIT_FSIZE
    env: dict | None = None
    proc: subprocess.CompletedProcess | None = None
    out: Path | None = None
    extra: dict = field(default_factory=dict)


@pytest.fixture(scope="module")
def train_cases(small_dataset, zoo, tmp_path_factory) -> dict[str, TrainCase]:
    """Every train-density case, three processes at a time; the --resume cases start
    once the run they resume (a completed 1-epoch run) exists."""
    work = tmp_path_factory.mktemp("train_cases")
    tiny = [*data_args(small_dataset), *TINY, "--epochs", "1"]
    blocker = work / "a_file"
    blocker.write_text("x")
    shared = rel_env(work / "shared_cache")  # the source run's and the resumes' cache
    cases = {
        "source": TrainCase(tiny, env=shared),
        "zoo": TrainCase([*data_args(zoo["data"]), *TINY, "--epochs", "1"]),
        "outdir_under_a_file": TrainCase(tiny, extra={"outdir": blocker / "out"}),
        "outdir_is_a_file": TrainCase(tiny, extra={"outdir": blocker}),
        "disk_full_at_start": TrainCase(tiny, limit=2000),
        "disk_full_in_training": TrainCase(tiny, limit=150_000),
    }
    for name, case in cases.items():
        case.out = case.extra.get("outdir", work / name / "out")

    def run(name: str) -> None:
        case = cases[name]
        case.proc = subprocess.run(
            cli_args("train-density", *case.args, "--outdir", case.out), capture_output=True,
            text=True, env=case.env or rel_env(work / name / "cache"), timeout=600,
            preexec_fn=_file_size_limit(case.limit) if case.limit else None)

    def damaged_copies() -> list[str]:
        source = cases["source"]
        assert source.proc.returncode == 0, source.proc.stderr[-3000:]
        names = ["resume_corrupt", "resume_pickle", "resume_pickle_best", "resume_other_arch"]
        for name in names:
            copy = work / name / "source"
            shutil.copytree(source.out / "results_1", copy)
            marker = work / name / "pwned"
            checkpoint = copy / "last_checkpoint.pt"
            if name == "resume_corrupt":
                checkpoint.write_bytes(checkpoint.read_bytes()[:3000])
            elif name == "resume_pickle":
                with checkpoint.open("wb") as handle:
                    pickle.dump({"state_dict": _Payload(marker), "fit_state": {}}, handle)
            elif name == "resume_pickle_best":
                with (copy / "best_model.pt").open("wb") as handle:
                    pickle.dump({"state_dict": _Payload(marker)}, handle)
            args = ["--resume", copy, "--epochs", "2"]
            if name == "resume_other_arch":
                args += ["--arch", "test_resnet"]
            cases[name] = TrainCase(args, env=shared, out=work / name / "out",
                                    extra={"source": copy, "marker": marker})
        return names

    with ThreadPoolExecutor(max_workers=3) as pool:
        first = pool.submit(run, "source")
        others = [pool.submit(run, name) for name in cases if name != "source"]
        first.result()
        others += [pool.submit(run, name) for name in damaged_copies()]
        for future in others:
            future.result()
    return cases


@pytest.mark.slow
def test_a_training_run_manifests_and_logs_every_exclusion(zoo, train_cases):
    """The zoo through train-density: the run completes; data_manifest.json records
    each exclusion with its reason and run.log has a WARNING line for it."""
    case = train_cases["zoo"]
    assert case.proc.returncode == 0, case.proc.stderr[-3000:]
    assert no_traceback(case.proc)
    run = case.out / "results_1"
    manifest = read_json(run / "data_manifest.json")
    reasons = {Path(str(e.get("path"))).name: e["reason"] for e in manifest["exclusions"]}
    warnings = [line for line in log_lines(run) if line.startswith("WARNING:")]
    for name, path in zoo["bad"].items():
        assert ZOO[name] in reasons.get(name, ""), (name, reasons.get(name))
        assert any(path.name in w for w in warnings), (name, warnings)
    for wanted in zoo["row_reasons"]:
        assert any(wanted in e["reason"] for e in manifest["exclusions"]), wanted
    used = {Path(i["path"]).name for i in manifest["images"]}
    assert zoo["big"].name in used and not set(zoo["bad"]) & used
    summary = read_json(run / "summary.json")
    assert summary["status"] == "completed"
    assert summary["data_config"]["num_excluded"] == len(manifest["exclusions"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["outdir_under_a_file", "outdir_is_a_file"])
def test_unwritable_outdir(train_cases, name):
    """As root permissions do not bite (chmod is covered, and skipped as root, in
    tests/record/test_rundir.py); a path through a regular file fails for everyone."""
    case = train_cases[name]
    blocker = case.out if name == "outdir_is_a_file" else case.out.parent
    assert case.proc.returncode == 2, case.proc.stderr[-2000:]
    assert no_traceback(case.proc)
    assert "--outdir" in case.proc.stderr and str(blocker) in case.proc.stderr
    assert blocker.read_text() == "x"


@pytest.mark.slow
def test_disk_full_before_the_run_record_exists(train_cases):
    """summary.json cannot even be written at start: one clear line, exit 2."""
    proc = train_cases["disk_full_at_start"].proc
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert no_traceback(proc), proc.stderr[-3000:]
    assert "Cannot write the run record in" in proc.stderr
    assert "File too large" in proc.stderr and "--outdir" in proc.stderr
    assert "the run did not start and its folder was removed" in proc.stderr
    # Nothing half-written is left to be trusted later: no results_1 without a summary
    # (which `runs validate` would call broken), no partial git_diff.patch or config.yaml,
    # no temp files.
    assert list(train_cases["disk_full_at_start"].out.iterdir()) == []


@pytest.mark.slow
def test_disk_full_during_training(train_cases):
    """The first checkpoint does not fit: the run fails (exit 1, traceback in
    run.log), summary.json says so and parses, no partial checkpoint is left."""
    import torch

    case = train_cases["disk_full_in_training"]
    assert case.proc.returncode == 1, case.proc.stderr[-3000:]
    run = case.out / "results_1"
    summary = read_json(run / "summary.json")
    assert summary["status"] == "failed" and summary["execution"]["exit_code"] == 1
    assert summary["execution"]["error"]["type"]
    assert "Traceback" in (run / "run.log").read_text()
    names = {p.name for p in run.iterdir()}
    assert not any(n.endswith(".tmp") for n in names), names
    for checkpoint in ("best_model.pt", "last_checkpoint.pt"):
        if checkpoint in names:  # if it is there, it is whole
            assert "state_dict" in torch.load(run / checkpoint, weights_only=True)


def test_disk_full_when_recording_the_end(tmp_path):
    """The final summary write fails: finalize survives it, prints one clear line,
    exits non-zero; summary.json is rewritten in place (its own bytes: no new block
    needed) with status failed and the reason, and stays valid JSON."""
    proc = subprocess.run([sys.executable, str(SCRIPTS / "disk_full_run.py"),
                           str(tmp_path / "out")],
                          capture_output=True, text=True, env=rel_env(), timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "Error: could not record the end of run results_1" in proc.stderr
    assert "File too large" in proc.stderr and "Traceback" not in proc.stderr
    assert "rewritten in place with status failed" in proc.stderr
    run = tmp_path / "out" / "results_1"
    summary = read_json(run / "summary.json")
    assert summary["status"] == "failed" and summary["execution"]["exit_code"] == 1
    error = summary["execution"]["error"]
    assert error["type"] == "OSError" and "File too large" in error["message"]
    assert "Error: could not record the end of run" in "\n".join(log_lines(run))
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    assert runs_list(tmp_path / "out")["results_1"]["status"] == "failed"


def test_a_run_that_dies_of_a_full_disk_records_why(tmp_path):
    """Issue 23 (6): the body fails because the disk is full and the summary cannot be
    rewritten atomically either; before, it stayed `status: running` with no reason."""
    proc = subprocess.run([sys.executable, str(SCRIPTS / "disk_full_run.py"),
                           str(tmp_path / "out"), "--fail"],
                          capture_output=True, text=True, env=rel_env(), timeout=120)
    assert proc.returncode == 1, proc.stderr
    summary = read_json(tmp_path / "out" / "results_1" / "summary.json")
    assert summary["status"] == "failed", summary["status"]
    error = summary["execution"]["error"]
    assert error["type"] == "OSError" and "File too large" in error["message"]
    assert error["where"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resume_corrupt", "resume_pickle"])
def test_resume_from_a_bad_checkpoint_is_refused(train_cases, name):
    case = train_cases[name]
    checkpoint = case.extra["source"] / "last_checkpoint.pt"
    assert case.proc.returncode == 2, case.proc.stderr[-3000:]
    # The run's record says which bytes its checkpoint was: another file is refused by its
    # digest before torch.load sees it.
    assert no_traceback(case.proc) and f"Refusing checkpoint {checkpoint}: its sha256" \
        in case.proc.stderr
    assert not case.extra["marker"].exists()
    assert read_json(case.out / "results_1" / "summary.json")["status"] == "failed"


@pytest.mark.slow
def test_resume_with_a_pickle_payload_in_best_model_executes_nothing(train_cases):
    case = train_cases["resume_pickle_best"]
    assert case.proc.returncode in (0, 2), case.proc.stderr[-3000:]
    assert no_traceback(case.proc)
    assert not case.extra["marker"].exists()


@pytest.mark.slow
def test_resume_with_another_architecture_is_a_clear_error(train_cases):
    proc = train_cases["resume_other_arch"].proc
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert no_traceback(proc)
