"""Submission bundles: how an author hands a signed card to a registry they do not run
(``acards submit``), and how its maintainer checks and publishes it in one step (``acards registry
accept``).

A bundle is a plain folder; send it as it is (a pull request, a shared drive) or archive it with any
tool and unpack it before accepting::

    submission.json           the manifest (RFC 8785): {"format", "card_id", "version", "digest",
                              "files": {name: sha256}}; every other file of the bundle is listed there
    envelope.json             the signed card, exactly as `acards sign` wrote it
    pages/card.html, card.md  with --render: the pages as the author's acards renders them
    report.json               with --report: a verification report, carried and checked by digest
    attestations/<digest>.intoto.jsonl
                              with --attestation: `acards attest` files of this card, named by
                              their digest (sha256 of the acards statement's payload)

Accepting refuses, before anything is written: a bundle that is a link or holds one, special files,
names that are absolute, climb out or hide in odd characters, files over 64 MiB (256 MiB in all, 1000
files), files the manifest does not list or lists but lacks, a digest that differs, a manifest whose
card is not the envelope's, and pages that are not what the registry itself renders. The registry
always publishes its own rendering (``registry verify`` re-renders byte for byte); pages in a bundle
are the author's preview, and must match it exactly. Then ``store.publish`` verifies the signature by
a trusted signer and SPEC §9's rules, and writes the card in one step: nothing partial is published.

Attestations (``acards attest`` files) are published with the card, each as its own ``attest`` entry
(acards.registry.attestations), with the bundle's report when it is the report the attestation names
(a ``reproduced`` one must have it). Each is checked BEFORE the card is published, against the
bundle's card, exactly as ``publish_attestation`` checks it against the stored card: its reviewer's
key trusted here, the card it names the bundle's, its level earned, its report present and
reproducing; a bundle with one that does not check out is refused whole. Then the card is
published, then the attestations. The report is carried for them and checked by digest; the card
folder holds what ``publish`` stores.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from acards.attest import in_toto
from acards.attest.reproduction import Attestation, open_attestation, preview_attestation, report_digest
from acards.canonical import canonical_bytes, parse_strict_json
from acards.errors import AcardsError, Location
from acards.evidence.paths import check_relative_path
from acards.registry.attestations import CardFiles, check_attestation, publish_attestation
from acards.registry.cards import Render, card_identity
from acards.registry.entries import sha256_hex
from acards.registry.store import publish

FORMAT = "acards-submission/1"
MANIFEST = "submission.json"
ENVELOPE = "envelope.json"
REPORT = "report.json"
PAGES = "pages"
ATTESTATIONS = "attestations"
ATTESTATION_SUFFIX = ".intoto.jsonl"

MAX_FILE = 64 * 1024 * 1024
MAX_TOTAL = 256 * 1024 * 1024
MAX_FILES = 1000
MAX_DEPTH = 4
_MAX_MANIFEST = 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HINT_AGAIN = "write the bundle again with `acards submit` and do not edit it afterwards"


def _error(code: str, message: str, hint: str = _HINT_AGAIN, file: str | None = None) -> AcardsError:
    return AcardsError(code, message, hint, Location(file=file) if file else Location())


def _is_bundle_name(name: str) -> bool:
    """A name a bundle may hold: the envelope, the report, or a plain file name under pages/ or
    attestations/."""
    if name in (ENVELOPE, REPORT):
        return True
    folder, _, leaf = name.partition("/")
    return folder in (PAGES, ATTESTATIONS) and _PLAIN_NAME.fullmatch(leaf) is not None


def plain_name(name: str, what: str) -> str:
    """``name`` when it may name a page or an attestation in a bundle (letters, digits, . _ -)."""
    if not _PLAIN_NAME.fullmatch(name):
        raise AcardsError("bundle.unsafe-path", f"the {what} name {name[:80]!r} is not a plain file name",
                          "rename the file to letters, digits, '.', '_' and '-' (at most 128 characters)")
    return name


@dataclass(frozen=True)
class Bundle:
    """A bundle whose every file checked out against its manifest."""

    manifest: dict
    files: dict[str, bytes]  # every listed file, by name (submission.json aside)

    @property
    def envelope(self) -> bytes:
        return self.files[ENVELOPE]

    @property
    def pages(self) -> dict[str, bytes]:
        return _under(self.files, PAGES)

    @property
    def attestations(self) -> dict[str, bytes]:
        return _under(self.files, ATTESTATIONS)

    @property
    def report(self) -> bytes | None:
        return self.files.get(REPORT)


def _under(files: Mapping[str, bytes], folder: str) -> dict[str, bytes]:
    prefix = f"{folder}/"
    return {name[len(prefix):]: data for name, data in sorted(files.items()) if name.startswith(prefix)}


# --- what the envelope says -------------------------------------------------------------------------


def preview_statement(envelope_bytes: bytes) -> tuple[dict, bytes, list[str]]:
    """(statement, payload, keyids on its signatures) of an envelope, without checking signatures:
    what an author's bundle says about its card. ``accept`` verifies everything again through
    ``store.publish``."""
    try:
        envelope = parse_strict_json(envelope_bytes)
        payload = base64.b64decode(envelope["payload"], validate=True)
        keyids = sorted({entry["keyid"] for entry in envelope["signatures"]})
        statement = in_toto.open_statement(envelope["payloadType"], payload)
    except AcardsError:
        raise
    except (TypeError, KeyError, ValueError, binascii.Error):
        raise _error("bundle.card-mismatch", "the envelope is not a DSSE envelope of a signed card",
                     "give the envelope `acards sign` wrote", ENVELOPE) from None
    if not all(isinstance(keyid, str) for keyid in keyids):
        raise _error("bundle.card-mismatch", "the envelope's keyids are not text", "give the envelope `acards sign` wrote", ENVELOPE)
    return statement, payload, keyids


def _card_fields(envelope_bytes: bytes) -> dict:
    statement, payload, _ = preview_statement(envelope_bytes)
    card_id, version, _ = card_identity(statement)
    return {"card_id": card_id, "version": version, "digest": sha256_hex(payload)}


# --- writing ------------------------------------------------------------------------------------------


def attestation_files(envelope_bytes: bytes, files: Iterable[tuple[Any, bytes]]) -> dict[str, bytes]:
    """The attestations ``acards submit`` carries (``files``: (what the author named, bytes)), by
    bundle name ``<digest>.intoto.jsonl``: one name per attestation, the digest the registry logs it
    by. Each must be an ``acards attest`` file of this envelope's card; signatures are the registry's
    to check (the reviewer's key may be one only the registry trusts)."""
    card_digest = _card_fields(envelope_bytes)["digest"]
    named: dict[str, bytes] = {}
    for given, data in files:
        try:
            digest, predicate = preview_attestation(data)
        except AcardsError as error:
            raise _error("bundle.bad-attestation", f"{given} is not an attestation `acards attest` wrote: "
                         f"{error.problems[0].message}", "carry the .attestation.intoto.jsonl file `acards attest` "
                         "wrote; other files do not go in a bundle", str(given)) from None
        if predicate["card"]["digest"] != card_digest:
            raise _error("bundle.bad-attestation", f"{given} attests card {predicate['card']['digest']}, not this "
                         f"card ({card_digest})", "carry attestations of the card you submit", str(given))
        name = f"{digest}{ATTESTATION_SUFFIX}"
        if name in named:
            raise _error("bundle.bad-attestation", f"{given} is an attestation given twice", "give each once", str(given))
        named[name] = bytes(data)
    return named


def write_bundle(out: str | os.PathLike, envelope_bytes: bytes, *, pages: Mapping[str, bytes] | None = None,
                 report: bytes | None = None, attestations: Mapping[str, bytes] | None = None) -> dict:
    """Write a bundle folder at ``out`` (which must not exist) in one step; return its manifest."""
    target = Path(out)
    if os.path.lexists(target):
        raise AcardsError("bundle.exists", f"{target} exists", "choose a new path for the bundle (-o)",
                          Location(file=str(target)))
    files = {ENVELOPE: bytes(envelope_bytes)}
    if report is not None:
        files[REPORT] = bytes(report)
    for folder, named in ((PAGES, pages or {}), (ATTESTATIONS, attestations or {})):
        for name, data in named.items():
            files[f"{folder}/{plain_name(name, folder)}"] = bytes(data)
    manifest = {"format": FORMAT, **_card_fields(envelope_bytes),
                "files": {name: sha256_hex(data) for name, data in sorted(files.items())}}
    _check_sizes(files)
    parent = target.parent if str(target.parent) else Path(".")
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    except OSError as error:
        raise AcardsError("usage.cannot-write", f"cannot create a folder in {parent}: {error.strerror or error}",
                          "check that the folder exists and is writable") from None
    try:
        os.chmod(staging, 0o755)
        for name, data in [(MANIFEST, canonical_bytes(manifest)), *files.items()]:
            path = staging / name
            path.parent.mkdir(exist_ok=True)
            with open(path, "xb") as handle:
                handle.write(data)
        os.rename(staging, target)  # the bundle appears whole, or not at all
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise AcardsError("usage.cannot-write", f"cannot write the bundle {target}: {error.strerror or error}",
                          "check that the folder is writable and has free space") from None
    return manifest


def _check_sizes(files: Mapping[str, bytes]) -> None:
    if len(files) > MAX_FILES:
        raise _error("bundle.too-large", f"the bundle holds {len(files)} files, more than {MAX_FILES}",
                     "carry fewer files; archive attestations that belong together")
    for name, data in files.items():
        if len(data) > MAX_FILE:
            raise _error("bundle.too-large", f"{name} has {len(data)} bytes, more than {MAX_FILE}",
                         "a bundle carries the signed card, its pages and attestations, not evidence", name)
    if sum(len(data) for data in files.values()) > MAX_TOTAL:
        raise _error("bundle.too-large", f"the bundle's files hold more than {MAX_TOTAL} bytes together",
                     "a bundle carries the signed card, its pages and attestations, not evidence")


# --- reading, with every check ---------------------------------------------------------------------


def _scan(root: Path) -> dict[str, os.stat_result]:
    """Every regular file under ``root`` by relative POSIX name, refusing links, special files, odd
    names, depth and counts over the limits; folders are walked with lstat, never followed."""
    found: dict[str, os.stat_result] = {}
    pending = [(root, "", 0)]
    while pending:
        folder, prefix, depth = pending.pop()
        try:
            children = sorted(os.scandir(folder), key=lambda child: child.name)
        except OSError as error:
            raise _error("bundle.not-a-bundle", f"cannot read {folder}: {error.strerror or error}",
                         "check the path and its permissions", str(folder)) from None
        for child in children:
            name = f"{prefix}{child.name}"
            try:
                check_relative_path(name)
            except AcardsError as error:
                raise _error("bundle.unsafe-path", error.problems[0].message, _HINT_AGAIN, name) from None
            try:
                info = os.lstat(child.path)
            except OSError as error:
                raise _error("bundle.missing-file", f"cannot read {name}: {error.strerror or error}", _HINT_AGAIN, name) from None
            if stat.S_ISLNK(info.st_mode):
                raise _error("bundle.symlink", f"{name} is a symbolic link",
                             "bundles hold plain files only; copy the file itself", name)
            if stat.S_ISDIR(info.st_mode):
                if depth + 1 >= MAX_DEPTH:
                    raise _error("bundle.too-large", f"{name} is nested more than {MAX_DEPTH} folders deep",
                                 _HINT_AGAIN, name)
                pending.append((Path(child.path), f"{name}/", depth + 1))
                found[f"{name}/"] = info
            elif stat.S_ISREG(info.st_mode):
                if info.st_size > MAX_FILE:
                    raise _error("bundle.too-large", f"{name} has {info.st_size} bytes, more than {MAX_FILE}",
                                 _HINT_AGAIN, name)
                found[name] = info
            else:
                raise _error("bundle.special-file", f"{name} is not a regular file (a FIFO, device or socket)",
                             "bundles hold plain files only", name)
            if len(found) > MAX_FILES:
                raise _error("bundle.too-large", f"the bundle holds more than {MAX_FILES} files and folders",
                             _HINT_AGAIN)
    return found


def _read_exact(root: Path, name: str, info: os.stat_result) -> bytes:
    """The bytes of a scanned file, opened without following links; it must still be that file."""
    try:
        descriptor = os.open(root / name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise _error("bundle.symlink" if os.path.islink(root / name) else "bundle.missing-file",
                     f"cannot read {name}: {error.strerror or error}", _HINT_AGAIN, name) from None
    try:
        opened = os.fstat(descriptor)
        if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino) or not stat.S_ISREG(opened.st_mode):
            raise _error("bundle.special-file", f"{name} changed while the bundle was read", "try again", name)
        with os.fdopen(os.dup(descriptor), "rb") as handle:
            data = handle.read(MAX_FILE + 1)
    finally:
        os.close(descriptor)
    if len(data) > MAX_FILE:
        raise _error("bundle.too-large", f"{name} has more than {MAX_FILE} bytes", _HINT_AGAIN, name)
    return data


def _manifest(data: bytes) -> dict:
    def bad(message: str) -> AcardsError:
        return _error("bundle.bad-manifest", message, _HINT_AGAIN, MANIFEST)

    if len(data) > _MAX_MANIFEST:
        raise bad(f"{MANIFEST} has more than {_MAX_MANIFEST} bytes")
    try:
        manifest = parse_strict_json(data)
    except AcardsError as error:
        raise bad(error.problems[0].message) from None
    if not isinstance(manifest, dict) or set(manifest) != {"format", "card_id", "version", "digest", "files"}:
        raise bad(f"{MANIFEST} must hold exactly format, card_id, version, digest and files")
    if manifest["format"] != FORMAT:
        raise bad(f"the format is {str(manifest['format'])[:80]!r}, not {FORMAT}")
    files = manifest["files"]
    if not isinstance(files, dict) or ENVELOPE not in files:
        raise bad(f"files must map each file's name to its sha256, {ENVELOPE} included")
    for name, digest in files.items():
        try:
            check_relative_path(name)
        except AcardsError as error:
            raise _error("bundle.unsafe-path", error.problems[0].message, _HINT_AGAIN, MANIFEST) from None
        if not _is_bundle_name(name):
            raise bad(f"{name[:80]!r} is not a file a bundle may hold ({ENVELOPE}, {REPORT}, {PAGES}/<name>, "
                      f"{ATTESTATIONS}/<name>)")
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise bad(f"the sha256 of {name} is not 64 lower-case hex digits")
    return manifest


def read_bundle(directory: str | os.PathLike) -> Bundle:
    """The bundle at ``directory``, once every check of the module's docstring bar the registry's own
    (signature, rules, rendering) has passed."""
    root = Path(directory)
    try:
        info = os.lstat(root)
    except OSError:
        raise AcardsError("bundle.not-a-bundle", f"{root} does not exist", "give the folder `acards submit` wrote",
                          Location(file=str(root))) from None
    if stat.S_ISLNK(info.st_mode):
        raise AcardsError("bundle.symlink", f"{root} is a symbolic link", "give the bundle folder itself",
                          Location(file=str(root)))
    if not stat.S_ISDIR(info.st_mode):
        raise AcardsError("bundle.not-a-bundle", f"{root} is not a folder",
                          "give the folder `acards submit` wrote (unpack an archive first)", Location(file=str(root)))
    found = _scan(root)
    if MANIFEST not in found:
        raise AcardsError("bundle.not-a-bundle", f"{root} has no {MANIFEST}", "give the folder `acards submit` wrote",
                          Location(file=str(root)))
    manifest = _manifest(_read_exact(root, MANIFEST, found.pop(MANIFEST)))
    listed = manifest["files"]
    folders = {name.split("/")[0] + "/" for name in listed if "/" in name}
    extra = sorted(name for name in found if name not in listed and name not in folders)
    if extra:
        raise _error("bundle.extra-file", f"the bundle holds {extra[0]}, which {MANIFEST} does not list"
                     + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""),
                     "remove it, or write the bundle again with `acards submit`", extra[0])
    missing = sorted(name for name in listed if name not in found)
    if missing:
        raise _error("bundle.missing-file", f"{MANIFEST} lists {missing[0]}, which the bundle lacks", _HINT_AGAIN, missing[0])
    if sum(found[name].st_size for name in listed) > MAX_TOTAL:
        raise _error("bundle.too-large", f"the bundle's files hold more than {MAX_TOTAL} bytes together", _HINT_AGAIN)
    files = {}
    for name in sorted(listed):
        data = _read_exact(root, name, found[name])
        if sha256_hex(data) != listed[name]:
            raise _error("bundle.digest-mismatch", f"{name} is not the file {MANIFEST} lists (sha256 differs)",
                         _HINT_AGAIN, name)
        files[name] = data
    fields = _card_fields(files[ENVELOPE])
    for field, value in fields.items():
        if manifest[field] != value:
            raise _error("bundle.card-mismatch", f"{MANIFEST} says {field} {str(manifest[field])[:80]!r}, the envelope "
                         f"{value!r}", _HINT_AGAIN, MANIFEST)
    return Bundle(manifest, files)


# --- accepting --------------------------------------------------------------------------------------


def check_pages(bundle: Bundle, statement: dict, render: Render) -> None:
    """The bundle's pages, when it has any, must be exactly what the registry renders."""
    pages = bundle.pages
    if not pages:
        return
    ours = dict(render(statement))
    for name in sorted(set(pages) | set(ours)):
        if pages.get(name) != ours.get(name):
            what = "lacks" if name not in pages else "has an extra" if name not in ours else "has another"
            raise _error("bundle.render-mismatch", f"the bundle {what} {PAGES}/{name} than the registry renders",
                         "submit without --render and let the registry render, or render with the registry's acards "
                         "version", f"{PAGES}/{name}")


@dataclass(frozen=True)
class CheckedAttestation:
    """An attestation of the bundle's card that checked out, with the report it is published with."""

    name: str
    attestation: Attestation
    report: bytes | None


def _report_named_by(attestation: Attestation, report: bytes | None) -> bytes | None:
    """The bundle's report when it is the one the attestation names (a bundle carries one report)."""
    if report is None:
        return None
    try:
        data = parse_strict_json(report)
    except AcardsError:
        return None
    return report if report_digest(data) == attestation.predicate["report"]["digest"] else None


def check_attestations(directory: str | os.PathLike, bundle: Bundle) -> list[CheckedAttestation]:
    """Every attestation the bundle carries, checked against the bundle's card and the registry's
    trusted keys as ``publish_attestation`` will check it once the card is published; the first that
    does not check out refuses the bundle."""
    from acards.registry.reader import trusted_keys

    if not bundle.attestations:
        return []
    keys = trusted_keys(directory)
    _, payload, _ = preview_statement(bundle.envelope)
    card, card_digest = CardFiles(bundle.envelope, payload), sha256_hex(payload)
    checked: dict[str, CheckedAttestation] = {}
    for name, data in bundle.attestations.items():
        where = Location(file=f"{ATTESTATIONS}/{name}")
        try:
            attestation = open_attestation(data, keys)
        except AcardsError as error:
            first = error.problems[0]
            raise AcardsError(first.code, first.message,
                              "the reviewer's key must be trusted here (`acards registry trust`) and the file be the "
                              "one `acards attest` wrote, unedited", where) from None
        if attestation.card_digest != card_digest:
            raise AcardsError("registry.attestation-card", f"{ATTESTATIONS}/{name} attests card "
                              f"{attestation.card_digest}, not the bundle's card {card_digest}",
                              "carry only attestations of the card the bundle submits", where)
        if attestation.digest in checked:
            raise _error("bundle.bad-attestation", f"{ATTESTATIONS}/{name} is the same attestation as "
                         f"{ATTESTATIONS}/{checked[attestation.digest].name}", "carry each attestation once",
                         f"{ATTESTATIONS}/{name}")
        report = _report_named_by(attestation, bundle.report)
        check_attestation(attestation, card, keys, report, where)
        checked[attestation.digest] = CheckedAttestation(name, attestation, report)
    return list(checked.values())


def accept(directory: str | os.PathLike, bundle_path: str | os.PathLike, registry_private_key: Any,
           renderer_for: Callable[[bytes], Render]) -> tuple[dict, list[dict], Bundle]:
    """Check the bundle at ``bundle_path`` and publish its card, then its attestations, to the registry
    ``directory``; return the card's log entry, the attestations' and the bundle. ``renderer_for(envelope)``
    gives the registry's render callable for the card (its trusted signers); nothing is written unless
    every check passes."""
    bundle = read_bundle(bundle_path)
    render = renderer_for(bundle.envelope)
    statement, _, _ = preview_statement(bundle.envelope)
    check_pages(bundle, statement, render)
    attestations = check_attestations(directory, bundle)
    entry = publish(directory, bundle.envelope, registry_private_key, render=render)
    logged = []
    for checked in attestations:
        try:
            logged.append(publish_attestation(directory, checked.attestation.bundle, registry_private_key, checked.report))
        except AcardsError as error:  # only a registry changed between the check and now gets here
            first = error.problems[0]
            raise AcardsError(first.code, f"the card was published (digest {entry['digest']}), but "
                              f"{ATTESTATIONS}/{checked.name} was not: {first.message}",
                              "publish the attestation alone: `acards publish ATTESTATION --registry R --key K "
                              "--report REPORT`", Location(file=f"{ATTESTATIONS}/{checked.name}")) from None
    return entry, logged, bundle
