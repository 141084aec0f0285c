"""`storyloom curate` on the command line: a summary line and a dataset on success; exit status 2 and
one clear message (no traceback) for a bad input directory, a bad expression or a forbidden output."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from flows.cli import main as storyloom


def test_curate_writes_the_selection_and_prints_a_summary(mixed_dataset, tmp_path, capsys):
    catalog = pq.read_table(mixed_dataset / "catalog.parquet").to_pandas()
    ids = sorted(catalog.story_id.unique())
    listed = tmp_path / "ids.txt"
    listed.write_text("\n".join(ids[:4]) + "\n")
    out = tmp_path / "out"
    code = storyloom(["curate", str(mixed_dataset), "--out", str(out), "--stories", str(listed),
                      "--license-allow", "CC-BY, CC0,public-domain", "--where", "words >= 9", "--min-frames", "2",
                      "--test-fraction", "0.5"])
    assert code == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]

    rows = catalog[catalog.story_id.isin(ids[:4]) & catalog.license.isin(["CC-BY", "CC0", "public-domain"])
                   & (catalog.text.str.split().str.len() >= 9)]
    counts = rows.story_id.value_counts()
    kept = counts[counts >= 2]
    got = pq.read_table(out / "catalog.parquet").to_pandas().story_id.value_counts()
    assert got.sort_index().to_dict() == kept.sort_index().to_dict()
    assert line.startswith(f"storyloom: curated {len(kept)} of {len(ids)} stories, {kept.sum()} of {len(catalog)} "
                           f"frames into ")
    record = json.loads((out / "config.json").read_text())["curation"]
    assert record["settings"]["license_allow"] == ["CC-BY", "CC0", "public-domain"]
    assert record["settings"]["where"] == ["words >= 9"] and record["settings"]["min_frames"] == 2


@pytest.mark.parametrize("args, message", [
    (["{missing}", "--out", "{out}"], "no such directory"),
    (["{tmp}", "--out", "{out}"], "is not a storyloom dataset: manifest.json, catalog.parquet missing"),
    (["{data}", "--out", "{out}", "--where", "score_clip >= lots"],
     "bad condition 'score_clip >= lots': 'lots' is not a number"),
    (["{data}", "--out", "{out}", "--where", "colour == red"], "unknown field 'colour'"),
    (["{data}", "--out", "{data}"], "is the input dataset or inside it"),
    (["{data}", "--out", "{file}"], "is a file, not a directory"),
    (["{data}", "--out", "{out}", "--stories", "{missing}"], "cannot read the story id list"),
    (["{data}", "--out", "{out}", "--test-fraction", "1.5"], "test_fraction must be in [0, 1)"),
])
def test_bad_input_or_arguments_exit_2_with_a_message(mixed_dataset, tmp_path, capsys, args, message):
    names = {"missing": tmp_path / "missing", "tmp": tmp_path, "out": tmp_path / "out", "data": mixed_dataset,
             "file": tmp_path / "file.txt"}
    if "{file}" in args:
        names["file"].write_text("not a directory")
    code = storyloom(["curate", *(a.format(**names) for a in args)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("storyloom: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_help_names_the_fields_and_operators():
    result = subprocess.run([sys.executable, "-m", "flows.cli", "curate", "--help"], capture_output=True, text=True,
                            check=True)
    for word in ("--where", "--license-allow", "--stories", "--test-fraction", "score_clip", "flags", "is null",
                 "not in", "frames"):
        assert word in result.stdout
