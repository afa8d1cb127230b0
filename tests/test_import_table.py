"""The records table an import hands on (``Summary.table``, what a `records.from: import` verify
computes from) is what acards' records reader reads from the records file the import wrote, on the
files lm_eval itself writes: made from the import's own columns when it reads the source in pieces,
read back from the written file when it reads record by record.  (tests/test_import_batch.py holds
the same for every kind of skip, duplicate, conflict and bad line.)"""

from __future__ import annotations

import dataclasses

from test_import_batch import as_lists
from test_import_tools import LM_EVAL_MAPPING, lm_eval_samples  # noqa: F401 — the fixture, with the files lm_eval writes

from acards.errors import Location
from acards.evidence.records import read_records
from acards.importers.lm_eval import LM_EVAL
from acards.importers.mapping import load_mapping
from acards.importers.run import run_import


def test_the_table_of_an_import_is_what_the_records_reader_reads_from_its_file(lm_eval_samples, tmp_path):  # noqa: F811
    mapping = tmp_path / "mapping.yaml"
    cases = [("undefended", "defended", "exact_match"), ("undefended-choice", "defended-choice", "acc")]
    for index, (first, second, metric) in enumerate(cases):
        mapping.write_text(LM_EVAL_MAPPING.replace("exact_match", metric) + "select: {filter: raw}\n" * (metric == "exact_match"))
        files = [str(lm_eval_samples[first]), str(lm_eval_samples[second])]
        found = []
        for name, source in (("batch", LM_EVAL), ("exact", dataclasses.replace(LM_EVAL, pieces=None))):
            out = tmp_path / f"{name}-{index}"
            out.mkdir()
            summary = run_import(source, files, load_mapping(mapping), out / "records.jsonl")
            assert summary.table.files == [str(out / "records.jsonl")] and len(summary.table) == summary.records == 96
            table = as_lists(summary.table)
            assert table == as_lists(read_records(out, [("records.jsonl", Location("records.jsonl"))])), name
            found.append((table, (out / "records.jsonl").read_bytes()))
        assert found[0] == found[1]
        unscored = sum(value is None for value in found[0][0]["rows"]["score"])
        assert unscored == 0 and len(found[0][0]["vocab"]["item"]) == 24
