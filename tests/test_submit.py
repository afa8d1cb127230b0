"""Submitting to a registry you do not run: `acards submit` writes a bundle, `acards registry accept`
checks it and publishes it whole, or refuses it with a coded error and publishes nothing.

Real keys, a real `acards verify` report of the shipped example, a real envelope from `acards sign`,
a real reviewer's attestation from `acards attest`.
The last test runs the project's flow registry/README.md shows, on an empty registry and then with a
card (tests/test_author_help.py runs its scratch-registry block).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from test_site import invoke, ok, signed_card

from acards.attest.keys import load_private_key
from acards.attest.reproduction import preview_attestation, sign_attestation
from acards.canonical import canonical_bytes
from acards.registry import bundle, reader

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Keys, a registry trusting the author and a reviewer, a signed card, its report, the reviewer's
    `reproduced` attestation of it (root/card.attestation.intoto.jsonl) and a full bundle."""
    root = tmp_path_factory.mktemp("submit")
    for name in ("author", "registry", "reviewer"):
        ok("key", "new", "--out", root / f"{name}.key", "--no-passphrase")
    registry = root / "registry"
    ok("registry", "init", registry, "--origin", "acards.test/submit", "--key", root / "registry.key")
    ok("registry", "trust", registry, root / "author.key.pub", "--name", "Ada Author", "--key", root / "registry.key")
    ok("registry", "trust", registry, root / "reviewer.key.pub")
    envelope = signed_card(root, "card", root / "author.key")
    ok("attest", envelope, "--report", root / "card.report.json", "--key", root / "reviewer.key",
       "--trusted-key", root / "author.key.pub", "-o", root / "card.attestation.intoto.jsonl")
    full = root / "full.bundle"
    ok("submit", envelope, "-o", full, "--render", "--report", root / "card.report.json",
       "--attestation", root / "card.attestation.intoto.jsonl")
    return root, registry, envelope, full


def attestation_name(world) -> str:
    """The bundle name of the world's attestation: its digest."""
    digest, _ = preview_attestation((world[0] / "card.attestation.intoto.jsonl").read_bytes())
    return f"{digest}{bundle.ATTESTATION_SUFFIX}"


def fresh(world, tmp_path) -> tuple[Path, Path]:
    """A copy of the registry and of the full bundle to change."""
    _, registry, _, full = world
    return Path(shutil.copytree(registry, tmp_path / "registry")), Path(shutil.copytree(full, tmp_path / "bundle"))


def accept(world, registry: Path, folder: Path):
    return invoke("registry", "accept", registry, folder, "--key", world[0] / "registry.key")


def refused(world, registry: Path, folder: Path, code: str, exit_code: int = 3) -> str:
    """Accept must refuse with ``code``, and the registry must be untouched: no log line, no card."""
    before = (registry / "log" / "entries.jsonl").read_bytes()
    result = accept(world, registry, folder)
    assert result.exit_code == exit_code, result.output
    assert code in result.output and "Traceback" not in result.output, result.output
    assert (registry / "log" / "entries.jsonl").read_bytes() == before
    assert not any((registry / "cards").iterdir())
    return result.output


def write_manifest(folder: Path, edit) -> None:
    path = folder / bundle.MANIFEST
    manifest = json.loads(path.read_bytes())
    edit(manifest)
    path.write_bytes(canonical_bytes(manifest))


def test_submit_writes_a_bundle_whose_manifest_lists_every_file(world):
    root, _, envelope, full = world
    manifest = json.loads((full / bundle.MANIFEST).read_bytes())
    assert manifest["format"] == bundle.FORMAT and manifest["card_id"] == "tiny-defense" and manifest["version"] == 1
    assert sorted(manifest["files"]) == [f"attestations/{attestation_name(world)}", "envelope.json", "pages/card.html",
                                         "pages/card.md", "report.json"]
    assert (full / "attestations" / attestation_name(world)).read_bytes() == (root / "card.attestation.intoto.jsonl").read_bytes()
    assert (full / "envelope.json").read_bytes() == envelope.read_bytes()
    on_disk = sorted(str(p.relative_to(full)) for p in full.rglob("*") if p.is_file())
    assert on_disk == sorted([*manifest["files"], bundle.MANIFEST])


def test_accept_publishes_the_card_with_the_registry_rendering_and_it_verifies(world, tmp_path):
    registry, folder = fresh(world, tmp_path)
    result = accept(world, registry, folder)
    assert result.exit_code == 0, result.output
    digest = re.search(r"digest ([0-9a-f]{64})", result.output)[1]
    attestation_digest = attestation_name(world).removesuffix(bundle.ATTESTATION_SUFFIX)
    assert f"published attestation {attestation_digest} (reproduced" in result.output
    entry, attested = reader.entries(registry)  # the card first, then its attestation
    assert entry["digest"] == digest == json.loads((folder / bundle.MANIFEST).read_bytes())["digest"]
    assert (attested["kind"], attested["digest"], attested["card"]) == ("attest", attestation_digest, digest)
    assert reader.reproductions(registry, digest) == 1
    for name in ("card.html", "card.md"):  # what the author previewed is what was published
        assert reader.rendered_file(registry, entry, name) == (folder / "pages" / name).read_bytes()
    ok("registry", "verify", registry, "--no-render")  # templates may change under concurrent edits; pages checked above
    ok("registry", "build", registry)
    assert "Ada Author" in (registry / "site" / "index.html").read_text(encoding="utf-8")
    # The same bundle again is the same digest: refused by SPEC §9's rules, the log unchanged.
    again = accept(world, registry, folder)
    assert again.exit_code == 3 and "registry.duplicate-digest" in again.output
    assert len(reader.entries(registry)) == 2


def test_a_bundle_without_pages_is_rendered_by_the_registry(world, tmp_path):
    root, registry, envelope, _ = world
    copy = Path(shutil.copytree(registry, tmp_path / "registry"))
    plain = tmp_path / "plain"
    ok("submit", envelope, "-o", plain)
    assert sorted(p.name for p in plain.iterdir()) == ["envelope.json", "submission.json"]
    answer = json.loads(ok("registry", "accept", copy, plain, "--key", root / "registry.key", "--format", "json").output)
    assert answer["ok"] is True and answer["attestations"] == []
    assert answer["entry"] == reader.entries(copy)[0]
    assert set(answer["entry"]["rendered"]) == {"card.html", "card.md"}


def other_card_attestation(world) -> bytes:
    """The world's attestation re-signed by the reviewer about another card (its predicate's digest)."""
    root = world[0]
    _, predicate = preview_attestation((root / "card.attestation.intoto.jsonl").read_bytes())
    predicate = {**predicate, "card": {**predicate["card"], "digest": "0" * 64}}
    return sign_attestation(predicate, load_private_key(root / "reviewer.key"))


def test_submit_refuses_an_existing_output_and_files_that_are_not_attestations_of_the_card(world, tmp_path):
    root, _, envelope, full = world
    result = invoke("submit", envelope, "-o", full)
    assert result.exit_code == 2 and "bundle.exists" in result.output
    odd = tmp_path / "bad name;.json"  # the name no longer matters: bundles name attestations by digest
    odd.write_text("{}", encoding="utf-8")
    other = tmp_path / "other.attestation.intoto.jsonl"
    other.write_bytes(other_card_attestation(world))
    attestation = root / "card.attestation.intoto.jsonl"
    for given, said in (([odd], "is not an attestation"), ([root / "card.report.json"], "is not an attestation"),
                        ([other], "not this card"), ([attestation, attestation], "given twice")):
        result = invoke("submit", envelope, "-o", tmp_path / "b", *[arg for path in given for arg in ("--attestation", path)])
        assert result.exit_code == 3 and "bundle.bad-attestation" in result.output and said in result.output, result.output
        assert not (tmp_path / "b").exists()


def test_an_extra_file_is_refused(world, tmp_path):
    registry, folder = fresh(world, tmp_path)
    (folder / "attestations" / "smuggled.json").write_text("{}", encoding="utf-8")
    assert "smuggled.json" in refused(world, registry, folder, "bundle.extra-file")


def test_an_extra_folder_is_refused(world, tmp_path):
    registry, folder = fresh(world, tmp_path)
    (folder / "hidden").mkdir()
    refused(world, registry, folder, "bundle.extra-file")


def test_a_missing_file_is_refused(world, tmp_path):
    registry, folder = fresh(world, tmp_path)
    (folder / "report.json").unlink()
    refused(world, registry, folder, "bundle.missing-file")


def test_an_altered_file_is_refused(world, tmp_path):
    registry, folder = fresh(world, tmp_path)
    path = folder / "attestations" / attestation_name(world)
    path.write_bytes(path.read_bytes().replace(b"{", b"[", 1))
    refused(world, registry, folder, "bundle.digest-mismatch")


def test_an_altered_page_with_a_matching_manifest_is_refused_as_not_the_registry_rendering(world, tmp_path):
    registry, folder = fresh(world, tmp_path)
    page = folder / "pages" / "card.md"
    page.write_bytes(page.read_bytes() + b"\nInjected claim: the defense works.\n")
    write_manifest(folder, lambda m: m["files"].__setitem__("pages/card.md", bundle.sha256_hex(page.read_bytes())))
    refused(world, registry, folder, "bundle.render-mismatch")


def test_a_manifest_that_misstates_the_card_is_refused(world, tmp_path):
    registry, folder = fresh(world, tmp_path)
    write_manifest(folder, lambda m: m.__setitem__("version", 7))
    refused(world, registry, folder, "bundle.card-mismatch")


@pytest.mark.parametrize("name", ["../outside.json", "/etc/passwd", "pages/../../x", "pages\\card.html"])
def test_a_manifest_path_escape_is_refused(world, tmp_path, name):
    registry, folder = fresh(world, tmp_path)
    write_manifest(folder, lambda m: m["files"].__setitem__(name, "0" * 64))
    refused(world, registry, folder, "bundle.unsafe-path")


def test_a_manifest_naming_an_unknown_role_or_a_bad_digest_is_refused(world, tmp_path):
    registry, folder = fresh(world, tmp_path)
    write_manifest(folder, lambda m: m["files"].__setitem__("run.sh", "0" * 64))
    refused(world, registry, folder, "bundle.bad-manifest")
    registry, folder = fresh(world, tmp_path / "2")
    write_manifest(folder, lambda m: m["files"].__setitem__("report.json", "ABC"))
    refused(world, registry, folder, "bundle.bad-manifest")


def test_symlinks_are_refused_inside_and_as_the_bundle(world, tmp_path):
    registry, folder = fresh(world, tmp_path)
    report = folder / "report.json"
    target = tmp_path / "elsewhere.json"
    shutil.move(report, target)
    report.symlink_to(target)
    refused(world, registry, folder, "bundle.symlink")
    link = tmp_path / "link.bundle"
    link.symlink_to(world[3], target_is_directory=True)
    refused(world, registry, link, "bundle.symlink")
    pages = folder / "pages"
    shutil.move(pages, tmp_path / "pages-elsewhere")
    pages.symlink_to(tmp_path / "pages-elsewhere", target_is_directory=True)
    refused(world, registry, folder, "bundle.symlink")


def test_a_fifo_is_refused(world, tmp_path):
    registry, folder = fresh(world, tmp_path)
    os.mkfifo(folder / "attestations" / "pipe")
    refused(world, registry, folder, "bundle.special-file")


def test_an_oversized_file_is_refused_without_being_read(world, tmp_path):
    registry, folder = fresh(world, tmp_path)
    with open(folder / "report.json", "r+b") as handle:  # sparse: no disk space, no reading
        handle.truncate(bundle.MAX_FILE + 1)
    refused(world, registry, folder, "bundle.too-large")


def test_a_card_by_a_signer_the_registry_does_not_trust_is_refused(world, tmp_path):
    root = world[0]
    stranger = tmp_path / "stranger"
    ok("registry", "init", stranger, "--origin", "acards.test/other", "--key", root / "registry.key")
    output = refused(world, stranger, Path(shutil.copytree(world[3], tmp_path / "bundle")), "envelope.", exit_code=3)
    assert "not trusted" in output or "envelope.too-few-signatures" in output


def library_bundle(world, tmp_path, attestations: dict[str, bytes], report: bool = True) -> tuple[Path, Path]:
    """A copy of the registry and a bundle written through the library, past `acards submit`'s checks."""
    root, registry, envelope, _ = world
    tmp_path.mkdir(parents=True, exist_ok=True)
    folder = tmp_path / "lib.bundle"
    bundle.write_bundle(folder, envelope.read_bytes(), attestations=attestations,
                        report=(root / "card.report.json").read_bytes() if report else None)
    return Path(shutil.copytree(registry, tmp_path / "registry")), folder


def test_an_attestation_that_does_not_verify_refuses_the_bundle_whole(world, tmp_path):
    """Each attestation is checked before the card is published: `refused` checks nothing landed."""
    root = world[0]
    good = (root / "card.attestation.intoto.jsonl").read_bytes()
    line = json.loads(good.split(b"\n")[0])
    signature = line["signatures"][0]["sig"]
    line["signatures"][0]["sig"] = ("B" if signature[0] != "B" else "C") + signature[1:]
    flipped = canonical_bytes(line) + b"\n" + good.split(b"\n")[1] + b"\n"
    for case, (attestations, report, code) in {
        "a flipped signature": ({"a.jsonl": flipped}, True, "envelope.bad-signature"),
        "another card": ({"a.jsonl": other_card_attestation(world)}, True, "registry.attestation-card"),
        "reproduced without its report": ({"a.jsonl": good}, False, "registry.attestation-report"),
        "the same one twice": ({"a.jsonl": good, "b.jsonl": good}, True, "bundle.bad-attestation"),
    }.items():
        registry, folder = library_bundle(world, tmp_path / case.replace(" ", "-"), attestations, report)
        output = refused(world, registry, folder, code)
        assert "attestations/a.jsonl" in output or "attestations/b.jsonl" in output, (case, output)


def test_an_attestation_by_a_reviewer_the_registry_does_not_trust_refuses_the_bundle(world, tmp_path):
    root, _, _, full = world
    stranger = tmp_path / "stranger"
    ok("registry", "init", stranger, "--origin", "acards.test/other", "--key", root / "registry.key")
    ok("registry", "trust", stranger, root / "author.key.pub")
    refused(world, stranger, Path(shutil.copytree(full, tmp_path / "bundle")), "envelope.unknown-keyid")
    ok("registry", "trust", stranger, root / "reviewer.key.pub")  # trusted now: accepted whole
    accepted = json.loads(ok("registry", "accept", stranger, tmp_path / "bundle", "--key", root / "registry.key",
                             "--format", "json").output)
    assert [e["assurance"] for e in accepted["attestations"]] == ["reproduced"]
    assert [e["kind"] for e in reader.entries(stranger)] == ["publish", "attest"]
    ok("registry", "verify", stranger, "--no-render")


def test_a_folder_that_is_not_a_bundle_is_refused(world, tmp_path):
    registry, _ = fresh(world, tmp_path)
    (tmp_path / "empty").mkdir()
    refused(world, registry, tmp_path / "empty", "bundle.not-a-bundle", exit_code=2)
    refused(world, registry, tmp_path / "absent", "bundle.not-a-bundle", exit_code=2)


# --- registry/README.md: its commands work as shown ---------------------------------------------


def readme_commands() -> list[list[str]]:
    """The `acards ...` commands in registry/README.md's indented code blocks, without comments."""
    commands = []
    for line in (REPO / "registry" / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("    acards "):
            commands.append(shlex.split(line.split(" #", 1)[0])[1:])
    return commands


def run_readme(commands, cwd: Path, replace: dict[str, str]) -> list[str]:
    outputs = []
    old = os.getcwd()
    os.chdir(cwd)
    try:
        for command in commands:
            args = [replace.get(word, word) for word in command]
            outputs.append(ok(*args).output)
    finally:
        os.chdir(old)
    return outputs


def test_the_readme_maintainer_and_author_flow_works_on_an_empty_registry_and_with_a_card(world, tmp_path):
    """The project's own flow: init registry/, verify and build it empty, trust an author, accept
    their bundle, verify and build again — the README's commands, with this test's files."""
    root, _, envelope, _ = world
    work = tmp_path / "project"
    work.mkdir()
    for name in ("registry.key", "registry.key.pub", "author.key", "author.key.pub"):
        shutil.copy(root / name, work / name)
    shutil.copy(envelope, work / "card.envelope.json")
    shutil.copy(root / "card.report.json", work / "card.report.json")
    flow = [c for c in readme_commands() if "registry/" in c or c[0] == "submit"]
    kinds = [c[0] if c[0] != "registry" else f"registry {c[1]}" for c in flow]
    for needed in ("registry init", "registry verify", "registry build", "registry trust", "submit", "registry accept"):
        assert needed in kinds, (needed, kinds)
    outputs = run_readme(flow, work, {})
    assert any("empty registry" in text for text in outputs)
    assert any("accepted" in text for text in outputs)
    assert len(reader.entries(work / "registry")) == 1
    assert (work / "registry" / "site" / "index.html").is_file()
