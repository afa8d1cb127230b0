"""Editor and CI integration (issue 13 item 6): `acards schema`, the init modeline, the pre-commit
hooks (.pre-commit-hooks.yaml), the GitHub Actions recipe (docs/ci/acards.yml) and shell completion."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from acards.cli import main
from acards.importers.mapping import mapping_template
from acards.present.render import card_template

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny-defense"
BIN = Path(sys.executable).parent
ACARDS = BIN / "acards"
MODELINE = re.compile(r"\A# yaml-language-server: \$schema=(\S+)\n")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _env(**extra) -> dict:
    """The environment a hook or CI step sees: this venv's acards first on PATH."""
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}", **extra}


# --- acards schema, and the modeline acards init writes -------------------------------------------


def test_schema_path_names_local_files_of_every_schema():
    for name, full in (("card", "acard-1.0"), ("report", "report-1.0"), ("mapping", "mapping-1.0"), ("record-1.0", "record-1.0")):
        result = invoke("schema", "path", name)
        assert result.exit_code == 0, result.output
        path = Path(result.output.strip())
        assert path.is_absolute() and path.is_file() and path.name == f"{full}.schema.json"
        assert json.loads(path.read_text())["$id"].endswith(f"/{full}.schema.json")
    assert invoke("schema", "path", "--uri").output.strip().startswith("file:///")
    assert json.loads(invoke("schema", "show", "report").output)["$id"].endswith("report-1.0.schema.json")
    listing = invoke("schema", "list").output
    assert "card" in listing and "acard-1.0" in listing and "training-1.0" in listing
    unknown = invoke("schema", "path", "../../etc/passwd")
    assert unknown.exit_code == 2 and "usage.unknown-schema" in unknown.output


@pytest.mark.parametrize("kind", ["card", "mapping"])
def test_init_modeline_names_a_local_schema_that_validates_what_init_wrote(tmp_path, kind):
    path = tmp_path / f"{kind}.yaml"
    result = invoke("init", path, *(["--mapping"] if kind == "mapping" else []))
    assert result.exit_code == 0, result.output
    text = path.read_text()
    named = Path(MODELINE.match(text)[1])
    assert named.is_absolute() and named.is_file()  # what yaml-language-server opens, offline
    schema = json.loads(named.read_text())
    assert named == Path(invoke("schema", "path", kind).output.strip())
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(yaml.safe_load(text)))
    if kind == "mapping":  # the mapping template is valid as written (import refuses its TODOs itself)
        assert errors == []
    else:  # the card template fails only where a TODO is left to fill in, and a filled-in card passes
        assert errors and all(error.instance == "TODO" for error in errors)
        assert not list(validator.iter_errors(yaml.safe_load((EXAMPLE / "card.yaml").read_text())))


def test_init_schema_url_writes_the_public_url_and_refuses_line_breaks(tmp_path):
    url = "https://acards.dev/schema/acard-1.0.schema.json"
    assert invoke("init", tmp_path / "card.yaml", "--schema-url", url).exit_code == 0
    assert (tmp_path / "card.yaml").read_text().startswith(f"# yaml-language-server: $schema={url}\n")
    for bad in ("", "a b", "x\nid: injected", "x#y"):
        result = invoke("init", tmp_path / "bad.yaml", "--schema-url", bad)
        assert result.exit_code == 2 and "usage.bad-schema-url" in result.output
        assert not (tmp_path / "bad.yaml").exists()


def test_a_schema_path_with_a_space_becomes_a_file_uri(monkeypatch, tmp_path):
    import acards.schemas as schemas

    folder = tmp_path / "with space" / "schema"
    shutil.copytree(REPO / "schema", folder)
    monkeypatch.setattr(schemas, "data_dir", lambda kind: folder)
    reference = schemas.editor_reference("card")
    assert reference.startswith("file:///") and "%20" in reference and " " not in reference
    assert MODELINE.match(card_template(reference))[1] == reference
    assert mapping_template("https://example.org/m.json").startswith("# yaml-language-server: $schema=https://example.org/m.json\n")


# --- pre-commit -----------------------------------------------------------------------------------

HOOKS = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())


def _card_repo(tmp_path: Path) -> Path:
    """A git repository holding the example card (good) and a broken card (bad/card.yaml)."""
    repo = tmp_path / "project"
    shutil.copytree(EXAMPLE, repo / "good", ignore=shutil.ignore_patterns("__pycache__", "build.py", "*.envelope.json"))
    (repo / "bad").mkdir()
    (repo / "bad" / "card.yaml").write_text((EXAMPLE / "card.yaml").read_text().replace("id: tiny-defense", "id: Not A Slug", 1))
    return repo


def test_hook_manifest_names_validate_and_check_on_card_files():
    assert [hook["id"] for hook in HOOKS] == ["acards-validate", "acards-check"]
    for hook in HOOKS:
        pattern = re.compile(hook["files"])
        assert pattern.search("card.yaml") and pattern.search("cards/card-v2.yml") and pattern.search("a/card.yaml")
        assert not pattern.search("mapping.yaml") and not pattern.search("card.envelope.json") and not pattern.search("scorecard.yaml")


@pytest.mark.parametrize("hook", HOOKS, ids=lambda h: h["id"])
def test_each_hook_entry_passes_good_cards_and_fails_bad_ones(tmp_path, hook):
    repo = _card_repo(tmp_path)
    command = shlex.split(hook["entry"])
    good = subprocess.run([*command, "good/card.yaml"], cwd=repo, env=_env(), capture_output=True, text=True)
    assert good.returncode == 0, good.stderr
    both = subprocess.run([*command, "good/card.yaml", "bad/card.yaml", "good/card.yaml"], cwd=repo, env=_env(),
                          capture_output=True, text=True)
    assert both.returncode == 2 and "schema.pattern" in both.stderr  # the bad card's code, though a good one came last
    if hook["id"] == "acards-check":
        (repo / "good" / "evidence" / "records.jsonl").write_text("{}\n")
        tampered = subprocess.run([*command, "good/card.yaml"], cwd=repo, env=_env(), capture_output=True, text=True)
        assert tampered.returncode == 3 and "evidence.digest-mismatch" in tampered.stderr


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_pre_commit_runs_the_hooks_for_real(tmp_path):
    """`pre-commit run` in a fresh git repository, with this checkout's hooks as local system hooks
    (pre-commit cannot install acards from the network here; docs/ci.md shows both set-ups)."""
    if not (BIN / "pre-commit").exists():
        pytest.skip("pre-commit is not installed in this environment (pip install pre-commit)")
    repo = _card_repo(tmp_path)
    local = [{**hook, "language": "system"} for hook in HOOKS]
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump({"repos": [{"repo": "local", "hooks": local}]}))
    env = _env(PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"), GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_NOSYSTEM="1")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True, env=env)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True, env=env)
    run = lambda *files: subprocess.run([str(BIN / "pre-commit"), "run", "--files", *files], cwd=repo, env=env,  # noqa: E731
                                        capture_output=True, text=True, timeout=300)
    passed = run("good/card.yaml", "good/evidence/records.jsonl")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert re.search(r"acards validate\.+Passed", passed.stdout) and re.search(r"acards check\.+Passed", passed.stdout)
    failed = run("good/card.yaml", "bad/card.yaml")
    assert failed.returncode == 1 and re.search(r"acards validate\.+Failed", failed.stdout) and "schema.pattern" in failed.stdout
    skipped = run("good/evidence/records.jsonl")  # no card among the files: nothing to run
    assert skipped.returncode == 0 and "(no files to check)Skipped" in skipped.stdout


# --- the GitHub Actions recipe --------------------------------------------------------------------

WORKFLOW = yaml.safe_load((REPO / "docs" / "ci" / "acards.yml").read_text())


def _steps() -> list[dict]:
    return [step for job in WORKFLOW["jobs"].values() for step in job["steps"]]


def test_workflow_verifies_without_generation_and_uploads_the_badge():
    triggers = WORKFLOW.get("on", WORKFLOW.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"push", "pull_request"} and WORKFLOW["permissions"] == {"contents": "read"}
    runs = [step["run"] for step in _steps() if "run" in step]
    assert any(re.search(r"\bacards verify \"\$CARD\" --no-generate\b", run) for run in runs)
    assert any(run.startswith("acards badge ") for run in runs)
    upload = [step for step in _steps() if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert len(upload) == 1 and "acards-badge.svg" in upload[0]["with"]["path"].split()


def test_workflow_acards_steps_run_against_the_example(tmp_path):
    """Every `run:` step that calls acards, run here with CARD set to the example (the install step is
    this test environment's own); a step whose command no longer exists, or that fails, fails here."""
    work = tmp_path / "checkout"
    shutil.copytree(EXAMPLE, work, ignore=shutil.ignore_patterns("__pycache__", "build.py"))
    env = _env(**{**WORKFLOW["env"], "CARD": "card.yaml"})
    ran = []
    for step in _steps():
        command = step.get("run", "")
        if not command.startswith("acards "):
            continue
        result = subprocess.run(["bash", "-e", "-c", command], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, (step["name"], result.stdout[-2000:], result.stderr[-2000:])
        ran.append(command.split()[1])
    assert ran == ["check", "verify", "badge", "render"]
    for name in WORKFLOW["jobs"]["verify"]["steps"][-1]["with"]["path"].split():
        assert (work / name).stat().st_size > 0, name
    assert "full card 1/2 strict" in (work / "acards-badge.svg").read_text()


# --- shell completion -----------------------------------------------------------------------------


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete --no-files --command acards")])
def test_completion_script_generates_for_each_shell(shell, marker):
    result = subprocess.run([str(ACARDS)], env=_env(_ACARDS_COMPLETE=f"{shell}_source"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and marker in result.stdout and "_ACARDS_COMPLETE" in result.stdout, result.stderr


def test_bash_completion_completes_commands_and_subcommands():
    def complete(words: str) -> list[str]:
        env = _env(_ACARDS_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)))
        result = subprocess.run([str(ACARDS)], env=env, capture_output=True, text=True, timeout=60)
        return [line.split(",", 1)[1] for line in result.stdout.splitlines() if "," in line]

    assert "schema" in complete("acards sch") and "badge" in complete("acards ba")
    assert set(complete("acards schema ")) >= {"path", "show", "list"}
