"""`acards import table`: CSV, JSONL or Parquet files whose columns the mapping names.

A CSV cell that is empty counts as a missing value.  Parquet needs pyarrow (the `columnar` extra);
it is imported only here.
"""

from __future__ import annotations

import csv
import io
from typing import Iterator

from acards.errors import AcardsError, Location
from acards.importers.jsonl_source import Piece, jsonl_pieces, jsonl_records
from acards.importers.source import HashingReader, Records, Source, SourceFile, open_source

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".parquet": "parquet"}
PARQUET_BATCH = 65536


def table_format(file: SourceFile, given: str | None) -> str:
    if given:
        return given
    fmt = FORMATS.get(file.path.suffix.lower())
    if fmt is None:
        raise AcardsError("import.bad-source", f"{file.name}: cannot tell the table's format from its name",
                          "name the file .csv, .jsonl or .parquet, or pass --table-format", Location(file.name))
    return fmt


def csv_records(file: SourceFile) -> Records:
    with open_source(file) as raw:
        handle = HashingReader(raw)
        text = io.TextIOWrapper(io.BufferedReader(handle), encoding="utf-8-sig", newline="")
        try:
            reader = csv.DictReader(text)
            if reader.fieldnames is None:
                raise AcardsError("import.bad-source", f"{file.name} is empty", "a CSV source starts with a header line",
                                  Location(file.name, 1))
            for row in reader:
                extra = row.pop(None, None)  # type: ignore[call-overload]
                if extra:
                    raise AcardsError("import.bad-source", f"line {reader.line_num} has more cells than the header",
                                      "quote cells that hold commas", Location(file.name, reader.line_num))
                yield f"line {reader.line_num}", {key: (None if value == "" else value) for key, value in row.items()}
        except UnicodeDecodeError as error:
            raise AcardsError("import.bad-source", f"{file.name} is not UTF-8 ({error.reason})", "save the CSV as UTF-8",
                              Location(file.name)) from None
        except csv.Error as error:
            raise AcardsError("import.bad-source", f"{file.name}: {error}", "check the CSV's quoting",
                              Location(file.name)) from None
        text.read()  # the rest, so that the digest covers every byte
        file.sha256, file.size = handle.hexdigest(), handle.size


def parquet_records(file: SourceFile) -> Records:
    import hashlib

    from acards.evidence.columnar import pyarrow_module

    pa = pyarrow_module(Location(file.name))
    with open_source(file) as handle:
        data = handle.read()  # read once: the bytes parsed are the bytes hashed
    file.sha256, file.size = hashlib.sha256(data).hexdigest(), len(data)
    try:
        parquet = pa.parquet.ParquetFile(pa.BufferReader(data))
        row = 0
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH):
            for values in batch.to_pylist():
                row += 1
                yield f"row {row}", values
    except (pa.ArrowException, OSError) as error:
        raise AcardsError("import.bad-source", f"{file.name} is not a readable Parquet file: {error}",
                          "check that the file is Parquet", Location(file.name)) from None


def table_source(fmt: str | None = None) -> Source:
    def read(file: SourceFile) -> Records:
        kind = table_format(file, fmt)
        return {"csv": csv_records, "jsonl": jsonl_records, "parquet": parquet_records}[kind](file)

    def pieces(file: SourceFile) -> Iterator[Piece] | None:
        return jsonl_pieces(file) if table_format(file, fmt) == "jsonl" else None

    return Source("table", read, pieces=pieces)
