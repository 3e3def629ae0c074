"""Real-world benchmark streams: Electricity (elecNormNew) and Forest CoverType.

The gzip-compressed CSVs live in ``<repo>/../shared/data`` unless ``DRIFTLINE_DATA_DIR``
names another folder. Rows stream in file order, which is part of the benchmark: never
shuffle them. A feature becomes a float, except the attributes MOA's ARFF header declares
nominal, which stay strings (Electricity's ``day``, ``"1"``..``"7"``): MOA's trees split
them multiway and count them, River's do the same with strings. (CoverType's 0/1
indicator columns stay numbers, as in the CSV.) The last column, ``class``, is the label,
an ``int`` where the file has integers (CoverType 1..7) and the string otherwise
(Electricity ``UP``/``DOWN``).
"""

from __future__ import annotations

import csv
import gzip
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

Event = tuple[dict[str, float | str], int | str]

DATA_DIR_ENV = "DRIFTLINE_DATA_DIR"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    file: str
    rows: int
    n_features: int
    classes: tuple[int | str, ...]
    description: str
    nominal: frozenset[str] = frozenset()


DATASETS: dict[str, DatasetInfo] = {
    "elec": DatasetInfo(
        "elec",
        "electricity.csv.gz",
        45_312,
        8,
        ("DOWN", "UP"),
        "Electricity (elecNormNew), NSW market, 30-minute periods",
        nominal=frozenset({"day"}),
    ),
    "covt": DatasetInfo(
        "covt",
        "covtype.csv.gz",
        581_012,
        54,
        tuple(range(1, 8)),
        "Forest CoverType, raw UCI values, MOA stream order",
    ),
}


class DatasetMissingError(FileNotFoundError):
    """A benchmark data file is not where it is looked for."""


def data_dir() -> Path:
    """Where the data files are: ``$DRIFTLINE_DATA_DIR``, else ``<repo>/../shared/data``."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def dataset_path(name: str) -> Path:
    info = _info(name)
    path = data_dir() / info.file
    if not path.is_file():
        raise DatasetMissingError(
            f"dataset {name!r} needs {path}, which does not exist; put {info.file} there "
            f"or set {DATA_DIR_ENV} to the folder that holds it"
        )
    return path


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(
            f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}"
        ) from None


def _label(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:
        return text


def load(name: str, n: int | None = None) -> Iterator[Event]:
    """Yield the first ``n`` rows (all if None) of dataset ``name`` as ``(x, y)``, in file order."""
    if n is not None and n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    path = dataset_path(name)
    return _rows(path, n, _info(name).nominal)


def _rows(path: Path, n: int | None, nominal: frozenset[str] = frozenset()) -> Iterator[Event]:
    with gzip.open(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        if header[-1] != "class":
            raise ValueError(f"{path}: the last column must be 'class', got {header[-1]!r}")
        features = header[:-1]
        text = [k in nominal for k in features]
        for row in itertools.islice(reader, n):
            x = {
                k: v if keep else float(v)
                for k, v, keep in zip(features, row[:-1], text, strict=True)
            }
            yield x, _label(row[-1])


def dataset_names() -> list[str]:
    return list(DATASETS)
