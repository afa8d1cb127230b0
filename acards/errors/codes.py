"""Every error code acards can raise, declared once, with its exit status and its docs anchor.

The exit status is a property of the code, never of its prefix: moving a check from one module to
another must not change what a script sees.  SPEC §8:

- 1 (NOT_REPRODUCED): something a card reports is not reproduced;
- 2 (INVALID): the card, another input document, or the command line is wrong;
- 3 (EVIDENCE): evidence is missing, unsafe, or does not match its digest or signature;
- 4 (NOT_FINISHED): acards could not finish (the machine, the disk, a lock, a missing package, a bug).

Each code is documented in docs/errors.md, in the table under the heading ``anchor`` names
(``## `weights``` has the anchor ``weights``); tests/unit/test_error_catalogue.py keeps the source,
this catalogue and that page in step.  Code that must react to one particular code compares with a
constant of this module (``error.code == codes.KEY_BAD_PASSPHRASE``), never with a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

NOT_REPRODUCED = 1
INVALID = 2
EVIDENCE = 3
NOT_FINISHED = 4
EXIT_STATUSES = (NOT_REPRODUCED, INVALID, EVIDENCE, NOT_FINISHED)

DOCS_PAGE = "docs/errors.md"


@dataclass(frozen=True)
class Code:
    """One error code: its name, the exit status it gives, and its section of docs/errors.md."""

    name: str
    exit_status: int
    anchor: str

    @property
    def docs(self) -> str:
        return f"{DOCS_PAGE}#{self.anchor}"


_CATALOGUE: dict[str, Code] = {}


def _declare(anchor: str, exit_status: int, names: str) -> None:
    for name in names.split():
        if name in _CATALOGUE:
            raise RuntimeError(f"error code {name} is declared twice in acards/errors/codes.py")
        if exit_status not in EXIT_STATUSES:
            raise RuntimeError(f"error code {name} has exit status {exit_status}, not one of {EXIT_STATUSES}")
        _CATALOGUE[name] = Code(name, exit_status, anchor)


_declare("reproduce", NOT_REPRODUCED, "reproduce.not-reproduced")

_declare("usage", INVALID, """
    usage.exists usage.unreadable usage.no-trusted-key usage.report-mismatch usage.report-inconsistent usage.bad-report usage.bad-format
    usage.bad-signers usage.bad-backend usage.bad-device usage.bad-executor usage.bad-shard usage.bad-threads usage.conflict
    usage.not-a-file usage.too-large
""")
_declare("usage", NOT_FINISHED, "usage.cannot-write")  # an output file cannot be written (folder, disk)
_declare("usage", INVALID, "usage.unknown-schema usage.bad-schema-url")  # `acards schema path NAME`, `init --schema-url`

_declare("yaml", INVALID, """
    yaml.too-large yaml.encoding yaml.tab yaml.syntax yaml.empty yaml.multiple-documents yaml.anchor yaml.alias
    yaml.tag yaml.key-type yaml.duplicate-key yaml.non-finite yaml.too-deep
""")
# yaml.comment-in-text is a warning, never fatal: an unquoted text value that a ` #` comment cuts short.
_declare("yaml", INVALID, "yaml.comment-in-text")

# The schema.<keyword> family (acards/card/validate.py builds the name from the failing JSON Schema
# keyword): every keyword the card schema can fail on, plus unknown-field (additionalProperties).
_declare("schema", INVALID, """
    schema.required schema.unknown-field schema.type schema.const schema.enum schema.pattern schema.min-length
    schema.max-length schema.minimum schema.maximum schema.exclusive-minimum schema.exclusive-maximum
    schema.min-items schema.unique-items
""")

_declare("card", INVALID, """
    card.not-found card.unreadable card.unknown-version card.placeholder card.unjustified-override
    card.duplicate-id card.unknown-cell card.unknown-estimate card.ambiguous-report card.conflicting-digests
    card.bad-pattern card.unsafe-pattern card.unsupported-pattern card.unknown-scorer card.unobservable-mechanism
""")
_declare("card", INVALID, "card.duplicate-pointer card.too-many-records-files")  # evidence.records bounds
_declare("card", INVALID, "card.bad-judges")  # judges: the primary among the others, or require_all_scorers without judges
_declare("card", INVALID, "card.already-current")  # `acards migrate` of a card at the newest standard
_declare("card", INVALID, "card.duplicate-seed")  # a training seed's checkpoints pinned twice

_declare("path", INVALID, "path.empty path.control-character path.backslash path.absolute path.escape path.not-normal")

# evidence.unpinned-seed is a warning, never fatal: records have fine-tuned outputs of a seed whose checkpoints the card does not pin.
_declare("evidence", EVIDENCE, "evidence.unpinned-seed")
_declare("evidence", EVIDENCE, """
    evidence.missing evidence.unreadable evidence.symlink evidence.special-file evidence.not-a-file
    evidence.digest-mismatch evidence.prompts-missing evidence.prompt-not-found evidence.too-deep
""")

_declare("records", EVIDENCE, """
    records.bad-json records.invalid records.duplicate records.subject-mismatch records.invalid-prompt
    records.duplicate-prompt records.line-too-long records.out-of-range
""")
_declare("records", EVIDENCE, "records.extra-value records.bad-line-end")  # strictly one JSON value per line
_declare("records", EVIDENCE, "records.bad-format")  # a Parquet or Arrow records file that cannot be read as one
_declare("records", NOT_FINISHED, "records.missing-extra")  # Parquet or Arrow records without pyarrow installed
_declare("records", EVIDENCE, "records.unknown-scorer records.score-conflict")  # the card's judges against the records' scores

_declare("weights", EVIDENCE, """
    weights.not-found weights.not-safetensors weights.bad-safetensors weights.bad-index weights.not-an-adapter
    weights.bad-adapter-config weights.unsupported-pattern weights.unsupported-adapter weights.bad-adapter weights.shape-mismatch
    weights.module-mismatch weights.missing-base weights.unsupported-dtype weights.non-finite weights.zero-update
    weights.bad-reference weights.missing-reference-module weights.not-orthonormal
""")
_declare("weights", INVALID, "weights.bad-threshold")  # the card's mechanism thresholds
_declare("weights", NOT_FINISHED, "weights.write-failed")  # the control adapter cannot be written

_declare("model", EVIDENCE, """
    model.unknown-cell model.unknown-condition model.missing-checkpoint model.not-found model.no-checkpoint-for-seed
    model.not-a-folder model.no-config model.no-weights model.bad-adapter model.load-failed model.bad-tokenizer
    model.control-failed model.unknown-label
""")

_declare("envelope", EVIDENCE, """
    envelope.bad-json envelope.bad-number envelope.duplicate-key envelope.lone-surrogate
    envelope.not-canonicalizable envelope.malformed envelope.unknown-payload-type envelope.non-canonical
    envelope.bad-statement envelope.unknown-statement-type envelope.unknown-predicate-type envelope.bad-signature
    envelope.unknown-keyid envelope.too-few-signatures envelope.duplicate-signature envelope.card-mismatch
    envelope.evidence-mismatch
""")
_declare("envelope", INVALID, "envelope.bad-threshold")  # the number of signatures asked for

_declare("registry", EVIDENCE, """
    registry.bad-key registry.bad-card registry.bad-envelope registry.bad-render registry.bad-revoke
    registry.duplicate-digest registry.version-not-increasing registry.bad-supersedes registry.bad-line
    registry.bad-index registry.foreign-origin registry.entry-mismatch registry.digest-mismatch
    registry.signer-mismatch registry.manifest-mismatch registry.missing-file registry.render-mismatch
    registry.missing-checkpoint registry.bad-checkpoint registry.root-mismatch registry.log-truncated
    registry.inconsistent-checkpoint registry.bad-proof registry.torn-tail registry.unsigned-head
    registry.orphan-card registry.stale-state registry.legacy-keys
""")
_declare("registry", EVIDENCE, "registry.bad-signer-record")  # a signer's name record that does not verify
# What the command line names: the folder, its origin, the key, a digest, a proof's range.
_declare("registry", INVALID, """
    registry.not-a-registry registry.exists registry.bad-origin registry.wrong-key registry.unknown-digest
    registry.bad-proof-request
""")
_declare("registry", INVALID, "registry.bad-signer-name registry.name-needs-key")  # `registry trust --name`
_declare("registry", NOT_FINISHED, "registry.locked registry.io-error")
# Published reproduction attestations and witness co-signatures (issue 14 items 2 and 3).
_declare("registry", EVIDENCE, """
    registry.bad-attestation registry.attestation-card registry.attestation-level registry.attestation-report
    registry.bad-witness registry.untrusted-witness registry.too-few-witnesses
""")

# `acards preregister` and the pre-registration step of `acards verify` (issue 14 item 1): a plan that
# does not check out is evidence (3); a plan still holding placeholders, or no way to read the plan
# the card names, is an input problem (2); the two warnings say what verify could not check.
_declare("preregistration", EVIDENCE, """
    preregistration.bad-plan preregistration.not-logged preregistration.digest-mismatch
    preregistration.unverified preregistration.not-logged-here
""")
_declare("preregistration", INVALID, "preregistration.placeholder preregistration.unavailable")
_declare("preregistration", INVALID, "preregistration.cannot-write")  # `preregister --write`: a card it cannot edit safely

# `acards attest`: an attestation file that does not verify (3); an assurance level not earned (2).
_declare("attest", EVIDENCE, "attest.bad-attestation")
_declare("attest", INVALID, "attest.level-not-earned")

# `acards registry witness`: a fork refused (3); the witness's key or state file (2).
_declare("witness", EVIDENCE, "witness.fork")
_declare("witness", INVALID, "witness.bad-state witness.registry-key witness.untrusted-key")

# A submission bundle (`acards submit`, `acards registry accept`): what is in it is evidence; the
# folder named on the command line is an input.
_declare("bundle", EVIDENCE, """
    bundle.bad-manifest bundle.missing-file bundle.extra-file bundle.digest-mismatch bundle.unsafe-path
    bundle.symlink bundle.special-file bundle.too-large bundle.card-mismatch bundle.render-mismatch
    bundle.bad-attestation
""")
_declare("bundle", INVALID, "bundle.not-a-bundle bundle.exists")

# Key files named on the command line, and their passphrases, are inputs: a problem with them is 2.
_declare("key", INVALID, """
    key.exists key.unreadable key.malformed key.unsupported key.no-passphrase key.bad-passphrase
    key.keyid-mismatch
""")
_declare("key", NOT_FINISHED, "key.unwritable")

_declare("generate", NOT_FINISHED, "generate.no-device generate.backend-unavailable generate.executor-unavailable "
                                   "generate.chat-template generate.missing-extra generate.snapshot-failed")
_declare("generate", EVIDENCE, "generate.no-reference")  # the prompts file lacks reference answers

_declare("cache", NOT_FINISHED, "cache.unusable cache.unusable-folder cache.version cache.readonly")
_declare("cache", INVALID, "cache.not-found")  # a shard file named on the command line
# cache.entry-rejected is a warning, never fatal: a cache entry failed its MAC check and was regenerated.
_declare("cache", NOT_FINISHED, "cache.entry-rejected cache.key-unusable")

# `acards plan`: the variance model, the design and the pilot named on its command line.
_declare("plan", INVALID, "plan.bad-components plan.bad-design plan.unreachable plan.pilot-too-small")

# `acards import`: the mapping file and what the mapped records say (2), the source files (3), a missing reader (4).
_declare("import", INVALID, """
    import.bad-mapping import.bad-pattern import.incomplete-mapping import.conflicting-mapping import.unmatched-files
    import.duplicate import.subject-mismatch import.prompt-conflict import.skipped import.nothing-imported import.no-prompts
    import.bad-sources import.prompts-without-records import.no-prompt-rule
""")
_declare("import", EVIDENCE, "import.bad-source import.source-changed")
_declare("import", NOT_FINISHED, "import.missing-extra")

# `acards export`: the options and the report exported (2), a missing writer (4).
_declare("export", INVALID, "export.bad-option export.not-reproduced export.no-value")
_declare("export", NOT_FINISHED, "export.missing-extra")

# `acards fill`: the claims named, and `reported` keys that have no recomputed value to write.
_declare("fill", INVALID, "fill.unknown-claim fill.no-value fill.empty-block fill.flow-claim")

_declare("internal", NOT_FINISHED, "internal.error internal.report-invalid")

CATALOGUE: MappingProxyType[str, Code] = MappingProxyType(_CATALOGUE)


def lookup(name: str) -> Code:
    """The catalogue entry of ``name``; a ValueError for a code nobody declared (a bug in acards)."""
    try:
        return _CATALOGUE[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown error code {name!r}: declare it in acards/errors/codes.py "
                         f"and document it in {DOCS_PAGE}") from None


def _named(name: str) -> str:
    return lookup(name).name


# Codes that callers react to (compare with these, never with a string).
EVIDENCE_MISSING = _named("evidence.missing")
KEY_BAD_PASSPHRASE = _named("key.bad-passphrase")
KEY_NO_PASSPHRASE = _named("key.no-passphrase")
INTERNAL_ERROR = _named("internal.error")
CARD_PLACEHOLDER = _named("card.placeholder")
