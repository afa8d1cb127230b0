"""A plain (non-editable) wheel carries the schemas and templates and works from any folder."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
                   check=True, capture_output=True)
    return next(out.glob("acards-*.whl"))


def test_wheel_carries_schemas_and_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for schema in (REPO / "schema").glob("*.json"):
        assert f"acards/_data/schema/{schema.name}" in names
    for template in (REPO / "templates").rglob("*"):
        if template.is_file():
            assert f"acards/_data/templates/{template.relative_to(REPO / 'templates').as_posix()}" in names


def test_installed_wheel_validates_from_another_folder(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    card = REPO / "tests" / "cases" / "valid" / "card.yaml"
    code = (
        "import acards, acards.resources as r\n"
        f"assert acards.__file__.startswith({str(site)!r}), acards.__file__\n"
        "assert '_data' in str(r.data_dir('schema'))\n"
        "from acards.cli import main\n"
        f"main(['init', 'new.yaml'], standalone_mode=False)\n"
        f"main(['validate', {str(card)!r}])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=elsewhere, capture_output=True, text=True,
                            env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "ACARDS_CACHE_DIR": str(tmp_path / "c")})
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    modeline = (elsewhere / "new.yaml").read_text().split("\n", 1)[0]
    assert modeline.startswith("# yaml-language-server: $schema=")
    named = Path(modeline.split("$schema=", 1)[1])  # the installed schema, offline (docs/editors.md)
    assert named.is_file() and str(named).startswith(str(site)) and "_data" in named.parts
