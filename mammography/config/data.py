"""The option groups of every command that reads images, each option declared once.

A command's config inherits the groups it has, so ``--csv``, ``--img-size``,
``--cache`` or ``--num-workers`` mean the same everywhere: one help text, one
default, one check (``own_problems``, collected by ``OptionGroup.group_problems``).

==================  ==============================================  =====================
group               options                                         commands
==================  ==============================================  =====================
ImageSourceOptions  --csv --dicom-root --dataset --path-column      every one that reads
                    --on-bad-image --max-bad-fraction               images
LabelOptions        --label-column --include-class-5                all but predict
SplitOptions        --split --official-split-leak                   all but predict
PreprocessOptions   --img-size --crop-breast --multiframe           train, tune, embed,
                    --j2k-reduce                                    data (the others use
                                                                    the training run's)
CacheOptions        --cache --cache-dir --workers                   every one that reads
                                                                    images
ClusterOptions      --ray-address                                   data cache, data check,
                                                                    embed, predict
LoaderOptions       --device --amp --num-workers                    train, tune, embed,
                                                                    eval-export, predict
InferenceOptions    LoaderOptions + --batch-size of inference       embed, eval-export,
                                                                    predict
==================  ==============================================  =====================

``LabelledSource`` (the three together; eval-export's ``--csv`` is optional),
``LabelsConfig`` (the same with ``--csv`` required) and ``ImageConfig``
(plus preprocessing and cache: what train, tune, embed and the data commands
share) are the usual compositions. Dataclass fields of mixins come base-most
first, i.e. from the *last* base listed, so the compositions list their groups
from the last (shown first in the help and config.yaml) to the first.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mammography.config.core import OptionGroup, setting

_SIZE = re.compile(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?")

NUM_WORKERS_HELP = ("DataLoader worker processes; -1 = auto: 0 on CPU (reading the cache in the "
                    "main process is faster than shipping batches between processes), "
                    "min(8, cores) on CUDA.")


def parse_image_size(value: int | str) -> tuple[int, int]:
    """``512`` or ``"512"`` -> (512, 512); ``"512x256"`` -> (512, 256) (height x width)."""
    if isinstance(value, bool):
        raise ValueError(f"expected 512 or HxW such as 512x256, got {value!r}")
    if isinstance(value, int):
        return value, value
    match = _SIZE.fullmatch(str(value))
    if not match:
        raise ValueError(f"expected 512 or HxW such as 512x256, got {value!r}")
    height = int(match.group(1))
    return height, int(match.group(2)) if match.group(2) else height


#: The public datasets ``--dataset`` reads as their publishers ship them: the one table of
#: them. Each name is a module of ``data/table/datasets/`` (``-`` read as ``_``), so adding
#: one is that module plus its name here.
DATASETS = ("vindr-mammo", "rsna", "cbis-ddsm", "inbreast", "embed")


@dataclass
class ImageSourceOptions(OptionGroup):
    """Which images: a CSV (data/table/) or, for predict, a folder; what an unusable one does."""

    csv: list[Path] = setting(
        help="Image table CSV: classificacao.csv (AccessionNumber, Classification[, "
        "PatientID]; an exam's images are the DICOM files under --dicom-root/"
        "<AccessionNumber>/) or a CSV with a path column (--path-column) and, where labels "
        "are read, a label column (--label-column). Labels 1-4 or A-D; predict ignores them. "
        "With --dataset: the publisher's own file(s), unchanged; repeat --csv for each "
        "(CBIS-DDSM's four case-description CSVs, EMBED's metadata and clinical tables).",
        default_factory=list, metavar="FILE", group="data")
    dicom_root: Path | None = setting(
        None, "Folder of the DICOM files: <root>/<AccessionNumber>/ for classificacao.csv "
        "(default: archive/ next to it); the base of relative paths for a path CSV (default: "
        "the CSV's folder); with --dataset the download's root folder (default: the first "
        "CSV's folder). predict without --csv scores every DICOM file under it (found by "
        "content, any extension).", metavar="DIR", group="data")
    dataset: Literal[DATASETS] | None = setting(  # type: ignore[valid-type]
        None, "Read --csv as a public dataset ships it: vindr-mammo (breast-level_annotations"
        ".csv), rsna (train.csv), cbis-ddsm (the four *_case_description_*_set.csv), inbreast "
        "(INbreast.csv), embed (EMBED_OpenData_metadata.csv + EMBED_OpenData_clinical.csv): "
        "its columns, labels, folder layout, patients and official split, recorded.",
        metavar="NAME", group="data")
    path_column: str = setting("path", "Path CSV: the column with image paths (absolute, or "
                               "relative to --dicom-root, else to the CSV's folder).",
                               group="data")
    on_bad_image: Literal["skip", "error"] = setting(
        "skip", "An unreadable image: skip it (WARNING, recorded in the manifest) or stop.",
        group="data")
    max_bad_fraction: float = setting(0.2, "Stop with exit 2 when more than this share of "
                                      "the images cannot be read.", group="data")

    def __post_init__(self) -> None:
        super().__post_init__()
        # One spelling: a list of files (a single path or None, from code or an older
        # config.yaml, means the same as --csv given once or not at all).
        if self.csv is None:
            self.csv = []
        elif isinstance(self.csv, str | Path):
            self.csv = [Path(self.csv)]
        else:
            self.csv = [Path(p) for p in self.csv]

    @property
    def csv_file(self) -> Path | None:
        """The (first) --csv file; None without one."""
        return self.csv[0] if self.csv else None

    def own_problems(self) -> list[str]:
        found = [f"--csv {path} does not exist or is not a file" for path in self.csv
                 if not path.is_file()]
        if len(self.csv) > 1 and self.dataset is None:
            found.append(f"--csv was given {len(self.csv)} times: several files make one "
                         "table only with --dataset (a publisher's files, e.g. CBIS-DDSM's "
                         "four CSVs); otherwise give one CSV")
        if self.dicom_root is not None and not self.dicom_root.is_dir():
            found.append(f"--dicom-root {self.dicom_root} does not exist or is not a folder")
        if not 0.0 <= self.max_bad_fraction <= 1.0:
            found.append(f"--max-bad-fraction must be between 0 and 1, got "
                         f"{self.max_bad_fraction}")
        return found


@dataclass
class LabelOptions(OptionGroup):
    """How the CSV's density labels are read (commands that use labels)."""

    label_column: str = setting("label", "Path CSV: the column with density labels.",
                                group="data")
    include_class_5: bool = setting(False, "Keep class 5 (not classifiable) rows instead of "
                                    "excluding them.", group="data")


@dataclass
class SplitOptions(OptionGroup):
    """Which of a public dataset's official sets a command reads (data/official_split.py)."""

    split: Literal["all", "official", "test"] = setting(
        "all", "With --dataset: all = every image (train-density draws its own grouped "
        "validation split); official = the publisher's training set only (train-density and "
        "tune draw validation from it; the test set is held out); test = the publisher's test "
        "set only (eval-export --split test).", group="data")
    official_split_leak: Literal["refuse", "drop", "train"] = setting(
        "refuse", "When a patient, exam, study or file is in both official sets (CBIS-DDSM: "
        "31 patients): refuse = stop and say so; drop = leave those groups out of the "
        "training set (the test set stays as published); train = keep them in training and "
        "out of the test set. Recorded either way.", group="data")

    def own_problems(self) -> list[str]:
        if self.split != "all" and getattr(self, "dataset", None) is None:
            return [f"--split {self.split} needs --dataset NAME: only a public dataset has "
                    "an official training/test split"]
        return []


@dataclass
class PreprocessOptions(OptionGroup):
    """How an image becomes the network's input."""

    img_size: int | str = setting(512, "Network input size: 512 (square) or HxW, height x "
                                  "width; for density HxW such as 1024x512 is recommended (the "
                                  "breast is about twice as tall as wide, so it fills a 2:1 "
                                  "input). Images are resized (aspect kept) and padded to it.",
                                  metavar="N|HxW", group="data")
    crop_breast: bool = setting(True, "Crop to the breast's bounding box before resizing.",
                                group="data")
    multiframe: Literal["exclude", "first", "middle"] = setting(
        "exclude", "Multi-frame objects (tomosynthesis volumes, cine): exclude them (with the "
        "reason recorded), or take their first or middle frame deliberately.", group="data")
    j2k_reduce: bool = setting(True, "Work on the coarsest wavelet level that still covers "
                               "twice --img-size, for every encoding alike (JPEG 2000 decoded "
                               "at that level: about 4.5x less CPU for full-field images, "
                               "benchmarks/bench_j2k.py; other encodings reduced to it, so the "
                               "input does not depend on the encoding); --no-j2k-reduce works "
                               "at full resolution.", group="data")

    def __post_init__(self) -> None:
        super().__post_init__()
        # One spelling per size: 512 for a square, "512x256" otherwise.
        shape = self.image_shape()
        if shape is not None:
            self.img_size = shape[0] if shape[0] == shape[1] else f"{shape[0]}x{shape[1]}"

    def image_shape(self) -> tuple[int, int] | None:
        """(height, width) of --img-size; None when it is not a size."""
        try:
            return parse_image_size(self.img_size)
        except ValueError:
            return None

    def own_problems(self) -> list[str]:
        shape = self.image_shape()
        if shape is None:
            return [f"--img-size must be a size such as 512 or 512x256 (height x width), "
                    f"got {self.img_size!r}"]
        if not all(32 <= side <= 4096 for side in shape):
            return [f"--img-size must be between 32 and 4096 (each side), got {self.img_size}"]
        return []


@dataclass
class CacheOptions(OptionGroup):
    """The decode-once cache of preprocessed images (data/cache.py)."""

    cache: Literal["disk", "memory", "off"] = setting(
        "disk", "Preprocessed-image cache: on disk (shared by runs), in memory, or off.",
        group="data")
    cache_dir: Path | None = setting(None, "Cache folder (default: the user cache dir, or "
                                     "$MAMMOGRAPHY_CACHE_DIR).", metavar="DIR", record=False,
                                     group="data")
    workers: int = setting(0, "Processes that decode images when building the cache "
                           "(0 = all cores).", record=False, group="data")

    def own_problems(self) -> list[str]:
        if self.workers < 0:
            return [f"--workers must be 0 (all cores) or more, got {self.workers}"]
        return []


#: ``--ray-address`` values that connect to a running cluster found by Ray itself
#: ($RAY_ADDRESS, or the cluster started on this machine).
RAY_AUTO = "auto"


@dataclass
class ClusterOptions(OptionGroup):
    """Spread the per-image work of a command over a Ray cluster (data/cluster/)."""

    ray_address: str | None = setting(
        None, "Spread the work over the Ray cluster at this address (host:port, ray://..., "
        "or auto: the cluster started on this machine or $RAY_ADDRESS): the image list is cut "
        "into shards that Ray tasks process on every node, with the same result as on one "
        "machine. Every node must see the images and --cache-dir at the same paths (shared "
        "storage); --workers is then Ray's (one task per CPU). Default: this machine only.",
        metavar="ADDR", record=False, group="integration")

    def own_problems(self) -> list[str]:
        if self.ray_address is None:
            return []
        found = []
        if not self.ray_address.strip():
            found.append("--ray-address is empty: give host:port, ray://host:port or auto")
        if importlib.util.find_spec("ray") is None:
            found.append("--ray-address needs Ray on this machine and every node: "
                         "pip install 'mammography[ray]'")
        return found

    def model_on_cluster_problems(self) -> list[str]:
        """What ``embed``/``predict`` cannot honour with ``--ray-address`` (their tasks read
        the images from the shared disk cache and run the model on the nodes' CPUs)."""
        if self.ray_address is None:
            return []
        found = []
        cache = getattr(self, "cache", "disk")
        if cache != "disk":
            found.append(f"--ray-address with --cache {cache}: the cluster's tasks read the "
                         "decoded images from the shared disk cache; use --cache disk with "
                         "--cache-dir on storage every node mounts")
        if getattr(self, "device", "auto") == "cuda":
            found.append("--ray-address with --device cuda: the cluster's tasks run the model "
                         "on the nodes' CPUs (bit-identical to this machine's CPU run); drop "
                         "--device cuda, or drop --ray-address to use this machine's GPU")
        if getattr(self, "num_workers", -1) > 0:
            found.append(f"--ray-address with --num-workers {self.num_workers}: each cluster "
                         "task reads its shard from the shared disk cache in its own process "
                         "(one task per CPU of every node), with no loader workers to set; "
                         "drop --num-workers")
        return found


@dataclass
class LoaderOptions(OptionGroup):
    """Where the model runs and how batches reach it."""

    device: Literal["auto", "cpu", "cuda"] = setting(
        "auto", "Where the model runs: auto (CUDA when available), cpu or cuda.",
        group="model")
    amp: bool = setting(True, "Mixed precision on CUDA (bfloat16 where supported, else "
                        "float16); ignored on CPU and by ONNX models.", group="model")
    num_workers: int = setting(-1, NUM_WORKERS_HELP, record=False, group="data")

    def own_problems(self) -> list[str]:
        if self.num_workers < -1:
            return [f"--num-workers must be -1 (auto) or more, got {self.num_workers}"]
        return []


@dataclass
class InferenceOptions(LoaderOptions):
    """A model that only scores images: its batch size (training has its own)."""

    batch_size: int = setting(32, "Images per inference batch.", group="data")

    def own_problems(self) -> list[str]:
        if self.batch_size < 1:
            return [f"--batch-size must be at least 1, got {self.batch_size}"]
        return []


@dataclass
class LabelledSource(SplitOptions, LabelOptions, ImageSourceOptions):
    """Images with their labels (what data/pipeline.py's ``load_table`` reads)."""


@dataclass
class LabelsConfig(LabelledSource):
    """A labelled image source that is the command's data: ``--csv`` is required."""

    def own_problems(self) -> list[str]:
        if not self.csv:
            return ["--csv is required: the labels CSV (e.g. classificacao.csv)"]
        return []


@dataclass
class ImageConfig(CacheOptions, PreprocessOptions, LabelsConfig):
    """Labelled images, preprocessed and cached: what train, tune, embed and the data
    commands share."""
