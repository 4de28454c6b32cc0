"""A labelled image folder: label file + images, decoded once into memory."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aimonk.data.images import cache_images, images_key, warn_about_data
from aimonk.data.labels import LabelFileError, LabelTable, check_trainable, read_labels, summarize
from aimonk.files import file_digest
from aimonk.progress import progress_shown

LABEL_FILE_NAMES = ("labels.txt", "labels.csv")


def find_label_file(data) -> Path:
    """`data` is a label file, or a folder holding labels.txt or labels.csv (in any letter case)."""
    data = Path(data)
    if data.is_file():
        return data
    if data.exists() and not data.is_dir():
        raise ValueError(f"{data} is not a regular file (a FIFO, socket or device): give a label file or a folder")
    if not data.is_dir():
        raise FileNotFoundError(f"no such data folder or label file: {data}")
    found = [p for p in sorted(data.iterdir()) if p.name.lower() in LABEL_FILE_NAMES and p.is_file()]
    if len(found) > 1:  # never silently one of them
        raise ValueError(f"{data} holds {' and '.join(p.name for p in found)}: give the label file to use, e.g. "
                         f"{found[0]}")
    if found:
        return found[0]
    raise FileNotFoundError(f"{data} holds no label file ({' or '.join(LABEL_FILE_NAMES)})")


def find_image_folder(label_file: Path) -> Path:
    """Images live in `images/` beside the label file, or beside it directly."""
    folder = label_file.parent / "images"
    return folder if folder.is_dir() else label_file.parent


@dataclass
class LabelledImages:
    """Images (N, H, W, 3) uint8 aligned row by row with their labels."""

    images: np.ndarray
    labels: LabelTable
    image_dir: Path
    missing: list[str] = field(default_factory=list)  # listed in the label file, not on disk
    unreadable: list[str] = field(default_factory=list)
    images_key: str | None = None  # aimonk.cache's key of the decoded images (features are cached under it)
    feature_cache: dict = field(default_factory=dict, repr=False, compare=False)  # see aimonk.model.features

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def values(self) -> np.ndarray:
        return self.labels.values

    @property
    def attributes(self) -> list[str]:
        return self.labels.attributes

    @property
    def filenames(self) -> list[str]:
        return self.labels.filenames

    def summary(self):
        return summarize(self.values, self.attributes)

    @property
    def label_file(self) -> str | None:
        """The label file the labels were read from, resolved (None for labels made in memory)."""
        return str(self.labels.source.resolve()) if self.labels.source else None

    def notes(self) -> list[str]:
        """What a run on these images says about the data: listed images not on disk."""
        note = missing_note(self.missing, self.labels.source, self.image_dir)
        return [note] if note else []

    def digests(self, rows=None) -> list[str]:
        """Content hashes of the image files of `rows` (all by default), to recognise them under other paths."""
        rows = range(len(self)) if rows is None else rows
        return [file_digest(self.image_dir / self.filenames[i]) for i in rows]


def read_label_folder(data, unknown_as_na: bool = False) -> tuple[LabelTable, Path, list[str]]:
    """Labels, the image folder, and the listed files that are missing on disk (see missing_note)."""
    label_file = find_label_file(data)
    table = read_labels(label_file, unknown_as_na=unknown_as_na)
    for message in table.warnings:
        warn_about_data(message, label_file)
    image_dir = find_image_folder(label_file)
    check_inside(table, image_dir)
    missing = [name for name in table.filenames if not (image_dir / name).is_file()]
    return table, image_dir, missing


def missing_note(missing: list[str], label_file, image_dir) -> str | None:
    """The line a run prints about listed images that are not on disk (a fact of the data, as in the reference
    folder's 3 of 975, so a note among the run's lines rather than a warning)."""
    if not missing:
        return None
    shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
    return f"{len(missing)} image(s) listed in {label_file} are not in {image_dir} and are skipped: {shown}"


def check_inside(table: LabelTable, image_dir: Path) -> None:
    """Every listed file must resolve (links and '..' followed) inside the image folder, through no link loop;
    one file listed under two names (a link) is warned about, as it counts twice."""
    root, first_name = image_dir.resolve(), {}
    for name, line in zip(table.filenames, table.lines or [None] * len(table)):
        try:
            target = (image_dir / name).resolve()
        except (RuntimeError, OSError) as error:  # Python raises either for a loop of symbolic links
            raise LabelFileError(table.source, line, f"{name!r} cannot be followed ({error.__class__.__name__}: "
                                                     "a loop of symbolic links?)") from None
        if not target.is_relative_to(root):
            raise LabelFileError(table.source, line, f"{name!r} resolves to {target}, outside the image folder "
                                                     f"{image_dir}")
        if target in first_name and target.is_file():
            warn_about_data(f"{name!r} is the same file as {first_name[target]!r} (a link): it counts twice",
                            table.source, line or 0)
        first_name.setdefault(target, name)


def present_rows(filenames, missing) -> list[int]:
    """The rows of `filenames` whose image is on disk: every row but those named in `missing`."""
    absent = set(missing)
    return [row for row, name in enumerate(filenames) if name not in absent]


def check_trainable_on_disk(table: LabelTable, missing: list[str]) -> None:
    """Every attribute learnable from the labels of the listed images on disk (before any is decoded)."""
    present = present_rows(table.filenames, missing)
    check_trainable(table.subset(present), f" among the {len(present)} listed images on disk" if missing else "")


def load_labelled_folder(data, image_size: int, unknown_as_na: bool = False, progress: bool | None = None,
                         trainable: bool = False, labels=None) -> LabelledImages:
    """Read the labels and decode every present, readable image once at image_size x image_size.
    trainable: first check that every attribute can be learned (before any image is decoded); labels: what
    read_label_folder(data) gave, where it was read already."""
    table, image_dir, missing = labels or read_label_folder(data, unknown_as_na)
    present = present_rows(table.filenames, missing)
    if trainable:
        check_trainable_on_disk(table, missing)
    paths = [image_dir / table.filenames[i] for i in present]
    key = images_key(paths, image_size)
    with progress_shown(progress):
        images, kept = cache_images(paths, image_size, key=key)
    rows = [present[i] for i in kept]
    unreadable = [table.filenames[i] for i in sorted(set(present) - set(rows))]
    if not rows:
        raise ValueError(f"no readable images for {table.source} in {image_dir}")
    if trainable and unreadable:
        check_trainable(table.subset(rows), f" among the {len(rows)} images that could be read")
    return LabelledImages(images, table.subset(rows), image_dir, missing, unreadable,
                          images_key=key)
