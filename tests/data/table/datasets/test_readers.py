"""Each public dataset read as published: files, labels per breast, exclusions, official sets.

The downloads are ``layouts.py``'s miniatures (the publishers' columns, quirks and
folder layouts, synthetic pixels, partial downloads); every expectation is worked
out from what the builder wrote, not from the reader.
"""

from __future__ import annotations

from collections import Counter

import pytest

from mammography.data.table.formats import TableRequest
from mammography.data.table.reader import load_label_table, read_image_table
from mammography.errors import ConfigError, DataError
from mammography.record.reporter import CollectingReporter
from tests.data.table.datasets import layouts


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    root = tmp_path_factory.mktemp("downloads")
    return {"vindr-mammo": layouts.vindr_mammo(root / "vindr"),
            "rsna": layouts.rsna(root / "rsna"),
            "cbis-ddsm": layouts.cbis_ddsm(root / "cbis"),
            "inbreast": layouts.inbreast(root / "inbreast"),
            "embed": layouts.embed(root / "embed")}


def read(layout, name, **kwargs):
    out = CollectingReporter()
    table = load_label_table(layout.csvs, layout.root, dataset=name, out=out, **kwargs)
    return table, out


def reasons(table):
    return Counter(str(e["reason"]).split(" (")[0] for e in table.exclusions)


def test_vindr_labels_are_per_breast_and_the_official_split_is_the_publishers(downloads):
    layout = downloads["vindr-mammo"]
    table, out = read(layout, "vindr-mammo")
    expect = layout.expect
    assert table.dataset["images_listed"] == expect["listed"]
    assert table.dataset["images_present"] == expect["present"] == len(table.images)
    assert reasons(table) == {"not in the download": expect["listed"] - expect["present"]}
    assert table.dataset["official_sets"] == {"train": expect["train"], "test": expect["test"]}
    for record in table.images:
        assert record.path.suffix == ".dicom"
        assert record.label == expect["breast_labels"][(record.accession, record.laterality)]
        assert record.laterality_source == "breast-level_annotations.csv laterality"
    sides = {r.laterality: r.label for r in table.images
             if r.accession == expect["per_breast_study"]}
    assert sides["L"] != sides["R"]  # the study whose breasts differ keeps both labels
    assert any("4 rows excluded, not in the download" in w for w in out.warnings)
    assert table.dataset["label_rule"].startswith("breast_density of breast-level")


def test_vindr_density_that_disagrees_with_the_findings_file_is_excluded(tmp_path):
    layout = layouts.vindr_mammo(tmp_path, studies=2)
    findings = layout.csvs[1]
    text = findings.read_text().splitlines()
    text[1] = text[1].replace("DENSITY A", "DENSITY D")
    findings.write_text("\n".join(text) + "\n")
    table, _ = read(layout, "vindr-mammo")
    assert reasons(table)["density differs in finding_annotations.csv"] == 1
    assert len(table.images) == 3


def test_rsna_site_2_has_no_density_and_a_partial_download_is_counted(downloads):
    layout = downloads["rsna"]
    table, out = read(layout, "rsna")
    expect = layout.expect
    assert len(table.images) == expect["labelled"]
    assert reasons(table) == {"no density": expect["site2_blank"],
                              "not in the download": expect["listed"] - expect["present"]}
    assert any("no density (site 2 does not report it)" in w for w in out.warnings)
    assert table.dataset["images_present"] == expect["present"]
    assert table.dataset["official_sets"] is None
    for record in table.images:
        assert record.accession == record.patient == record.path.parent.name
        assert record.fields["site_id"] == "1"
        assert record.label == "ABCD".index(record.fields["density"]) + 1


def test_cbis_rows_collapse_to_images_and_copies_and_zero_densities_are_excluded(downloads):
    layout = downloads["cbis-ddsm"]
    table, out = read(layout, "cbis-ddsm")
    images = layouts.cbis_images()
    by_subject = {i.subject: i for i in images}
    # Listed: one per image file path; present: not P_00006's.
    assert table.dataset["images_listed"] == len(images)
    assert table.dataset["images_present"] == sum(i.patient != "P_00006" for i in images)
    excluded = reasons(table)
    assert excluded["not in the download"] == 2
    assert excluded["density not 1-4"] == 2          # the two calc-test rows with 0
    assert excluded["the same full image stored again under another subject folder"] == 2
    kept = {(r.split, r.patient, r.laterality, r.view) for r in table.images}
    assert len(kept) == len(table.images)            # one record per image and set
    for record in table.images:
        subject = next(s for s in by_subject if record.path.parts[-4] == s)
        assert record.label == by_subject[subject].density
        assert record.split == ("train" if "Training" in subject else "test")
        assert record.patient == by_subject[subject].patient and record.accession == \
            record.patient
    # P_00002's CC has three abnormality rows: one image.
    assert sum(r.patient == "P_00002" for r in table.images) == 2
    # P_00005's right CC: rows 3 and 0, the 0 row excluded, the image kept with 3.
    assert [r.label for r in table.images if (r.patient, r.laterality, r.view) ==
            ("P_00005", "R", "CC")] == [3]
    # P_00007's only row has density 0: no image.
    assert not any(r.patient == "P_00007" for r in table.images)
    assert table.dataset["official_sets"] == dict(Counter(r.split for r in table.images))
    assert "series found through" in table.dataset["notes"][0]


def test_cbis_without_metadata_finds_series_by_their_headers(tmp_path):
    layout = layouts.cbis_ddsm(tmp_path, metadata=False)
    table, out = read(layout, "cbis-ddsm")
    with_headers = {(r.patient, r.laterality, r.view, r.split, r.label) for r in table.images}
    assert table.dataset["notes"] == ["series found through the DICOM headers (no "
                                      "metadata.csv)"]
    assert any("series found by the Study/Series UIDs" in line for line in out.lines)
    metadata = layouts.cbis_ddsm(tmp_path / "again", metadata=True)
    again, _ = read(metadata, "cbis-ddsm")
    assert with_headers == {(r.patient, r.laterality, r.view, r.split, r.label)
                            for r in again.images}


def test_cbis_metadata_given_with_csv_and_in_posix_form_is_used(tmp_path):
    layout = layouts.cbis_ddsm(tmp_path, windows_paths=False)
    given = layouts.Layout(layout.root, [*layout.csvs, tmp_path / "metadata.csv"])
    table, _ = read(given, "cbis-ddsm")
    assert table.dataset["images_present"] == layout.expect["present"]
    assert any(f["role"] == "metadata" for f in table.dataset["files"])


def test_inbreast_finds_files_by_name_with_ml_for_mlo_and_refuses_a_blank_acr(downloads):
    layout = downloads["inbreast"]
    table, out = read(layout, "inbreast")
    assert table.dataset["images_present"] == layout.expect["present"]
    assert reasons(table) == {"no density": 1, "not in the download": 1}
    blank = next(e for e in table.exclusions if e["reason"].startswith("no density"))
    assert blank["row"] == layout.expect["blank_acr_row"]
    for record in table.images:
        assert "_MG_" in record.path.name
        assert record.path.name.split("_")[1] == record.patient and len(record.patient) == 16
        assert record.view in ("CC", "MLO") and record.accession.startswith(record.patient)
        side_in_name, view_in_name = record.path.stem.split("_")[3:5]
        assert side_in_name == record.laterality
        assert view_in_name == ("ML" if record.view == "MLO" else "CC")


def test_embed_labels_are_the_exams_tissueden_and_paths_are_rerooted(downloads):
    layout = downloads["embed"]
    table, out = read(layout, "embed")
    excluded = reasons(table)
    assert excluded["FinalImageType cview"] == 32
    assert excluded["tissueden 5"] == 4 and excluded["no tissueden"] == 4
    assert excluded["not in the download"] == 4
    assert sorted({r.accession for r in table.images}) == sorted(
        layout.expect["labelled_exams"])
    for record in table.images:
        assert str(record.path).startswith(str(layout.root / "cohort_1"))
        exam_index = (int(record.accession) - 6000000000000000) // 977
        assert record.label == 1 + exam_index % 4
    assert table.dataset["notes"] == [f"anon_dicom_path prefix '{layouts.EMBED_PREFIX}' "
                                      f"replaced by {layout.root}"]


def test_embed_finds_another_absolute_prefix_and_disagreeing_rows_are_excluded(tmp_path):
    layout = layouts.embed(tmp_path / "dl", exams=3)
    meta, clinical = layout.csvs
    meta.write_text(meta.read_text().replace(layouts.EMBED_PREFIX, "/data/copies/embed/"))
    rows = clinical.read_text().splitlines()
    rows.append(rows[1].replace(",1.0,", ",2.0,"))   # exam 0 now says 1 and 2
    clinical.write_text("\n".join(rows) + "\n")
    table, _ = read(layout, "embed")
    assert reasons(table)["tissueden differs between the exam's rows"] == 4
    assert table.dataset["notes"][0].startswith("anon_dicom_path prefix '/data/copies/embed/'")
    assert {r.accession for r in table.images} == {str(6000000000000000 + 977)}


def test_predict_reads_a_dataset_without_labels(downloads):
    layout = downloads["rsna"]
    out = CollectingReporter()
    table = read_image_table(layout.csvs, layout.root, TableRequest(labels=None), out,
                             dataset="rsna")
    assert len(table.images) == layout.expect["present"]  # site 2 too: no label needed
    assert all(r.label is None for r in table.images)


def test_the_wrong_files_or_root_are_refused_naming_the_fix(downloads, tmp_path):
    vindr, rsna = downloads["vindr-mammo"], downloads["rsna"]
    with pytest.raises(DataError, match="is not one of VinDr-Mammo's files.*breast-level"):
        read(layouts.Layout(vindr.root, rsna.csvs), "vindr-mammo")
    with pytest.raises(DataError, match="needs breast-level_annotations.csv"):
        read(layouts.Layout(vindr.root, [vindr.csvs[1]]), "vindr-mammo")
    with pytest.raises(DataError, match="No usable images .*not in the download.*--dicom-root"):
        read(layouts.Layout(tmp_path, rsna.csvs), "rsna")
    with pytest.raises(DataError, match="looks like train.csv of a public dataset: read it as "
                                        "published with --dataset rsna"):
        load_label_table(rsna.csvs[0], rsna.root, out=CollectingReporter())
    with pytest.raises(ConfigError, match="'kaggle' is not one of vindr-mammo"):
        read(rsna, "kaggle")


def test_the_order_of_the_files_given_changes_nothing(downloads):
    layout = downloads["cbis-ddsm"]
    forward, _ = read(layout, "cbis-ddsm")
    backward, _ = read(layouts.Layout(layout.root, layout.csvs[::-1]), "cbis-ddsm")
    assert backward.csv_paths == forward.csv_paths
    assert [(r.path, r.label, r.split) for r in backward.images] == \
        [(r.path, r.label, r.split) for r in forward.images]
    assert backward.exclusions == forward.exclusions
