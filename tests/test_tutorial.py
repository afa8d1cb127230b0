"""docs/importing.md's tutorial, run command by command: every ```sh block of its section, in order,
in an empty folder, with this venv's `acards` first on PATH and a private cache; each command must
exit 0. So the tutorial cannot show a command that does not work, and cannot skip one it needs."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "importing.md"
SECTION = "## Tutorial: from your eval logs to a verified card in five minutes"


def commands(markdown: str) -> list[str]:
    """The shell commands of the tutorial section's ```sh blocks: one per line, except that a heredoc
    (`<<'EOF'` up to its `EOF` line) is one command with its body."""
    section = markdown.split(SECTION, 1)[1].split("\n## ", 1)[0]
    found = []
    for block in re.findall(r"^```sh\n(.*?)^```$", section, flags=re.S | re.M):
        lines = block.splitlines()
        while lines:
            line = lines.pop(0)
            if not line.strip():
                continue
            heredoc = re.search(r"<<'(\w+)'", line)
            if heredoc:
                end = lines.index(heredoc.group(1))
                line, lines = "\n".join([line, *lines[:end + 1]]), lines[end + 1:]
            found.append(line)
    return found


def test_the_command_splitter_keeps_heredocs_whole():
    doc = f"{SECTION}\n\n```sh\necho a\ncat > x <<'EOF'\n1\n2\nEOF\n\necho b  # note\n```\n\n## Next\n```sh\nnot this\n```\n"
    assert commands(doc) == ["echo a", "cat > x <<'EOF'\n1\n2\nEOF", "echo b  # note"]


def test_the_tutorial_runs_command_by_command(tmp_path):
    steps = commands(DOC.read_text(encoding="utf-8"))
    assert [s.split()[:2] for s in steps if s.startswith("acards")] == [
        ["acards", "init"], ["acards", "import"], ["acards", "init"], ["acards", "check"],
        ["acards", "fill"], ["acards", "verify"], ["acards", "export"]]
    folder = tmp_path / "work"
    folder.mkdir()
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
           "ACARDS_CACHE_DIR": str(tmp_path / "cache"), "HOME": str(tmp_path)}
    for step in steps:
        done = subprocess.run(["bash", "-c", step], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{step}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr
    report = json.loads((folder / "report.json").read_text())
    assert report["reproduced"] is True
    assert report["claims"][0]["verdict"] == "insufficient"  # what the tutorial's prose says
    reliability = report["cells"][0]["diagnostics"]["reliability"]["estimates"]
    assert reliability["reduction"] == 0.625 and reliability["n_subjects"] == 8
    assert "reported:" in (folder / "card.yaml").read_text()  # fill wrote the values verify then reproduced
    rows = list(csv.DictReader((folder / "estimates.csv").open(newline="")))
    assert [r["diagnostic"] for r in rows] == ["reliability", "fresh", "mechanism", "transfer", "cost"]
    assert float(rows[0]["reduction"]) == 0.625
