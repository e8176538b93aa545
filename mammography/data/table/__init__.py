"""The image table: which images a command reads, from a CSV, with labels or without.

* ``records`` — ``ImageRecord`` (one image) and ``LabelTable`` (the images and
  every exclusion);
* ``csv_read`` — a CSV whatever the export (encodings, BOM, delimiters, line ends);
* ``formats`` — what a dataset layout is (``TableFormat``) and what a command asks
  (``TableRequest``: labels or none);
* ``accession`` (classificacao.csv: an exam per row, its images in a folder) and
  ``paths`` (an image per row) — the layouts;
* ``datasets`` — public datasets read as their publishers ship them (``--dataset``);
* ``reader`` — ``TABLE_FORMATS`` and ``read_image_table`` / ``load_label_table``;
* ``discovery`` — which files under a folder are DICOM;
* ``headers`` — records completed from their DICOM headers;
* ``exclusions`` — what is left out, and when too much is.
"""
