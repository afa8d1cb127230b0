"""The verification report (SPEC §7) as types: what every diagnostic returns, what the pipeline
assembles, what the text output, the card pages and the forest plot read.

Pure: msgspec only, no I/O, so the diagnostics can return these types.

Shape rules, held by tests/unit/test_report_types.py against schema/report-1.0.schema.json:

- Field order is the report's JSON key order: ``as_builtins`` writes the fields in declaration order,
  so a report's bytes are a function of these declarations (``from_builtins(data)`` written back is
  byte-identical to the data).
- A field the schema requires has no default; a field it leaves optional defaults to ``UNSET``,
  which is *absent*, not null: it is left out when written, and a stored report without it reads
  back as ``UNSET`` (falsy), so reading and writing never invents a key.  The card pages treat
  ``UNSET`` as an undefined name (acards.present.render).
- A number the schema types ``number`` is ``int | float``: a report read back from canonical JSON
  (where ``2.0`` becomes ``2``) keeps its ints, so re-signing or re-rendering it changes nothing.
- ``str`` where the schema has an enum (outcomes, verdicts, mechanism classes): the schema check of
  a stored report (acards.report.stored) enforces the values; the types do not repeat them.

Mappings that stay ``dict[str, Any]``, on purpose:

- ``Diagnostic.estimates``: its keys differ per diagnostic and per outcome (an insufficient result
  has few or none; the mechanism's ``control_*`` numbers exist only with a control); reporting a
  missing estimate as absent rather than null is part of the format, and readers use ``.get``.
- ``Diagnostic.thresholds``: the thresholds in force, keyed by the card schema's names per
  diagnostic (numbers or strings), as the card gave them.
- ``Diagnostic.details``: free-form per diagnostic (bootstrap settings, per-module weight tables,
  the transfer task).
- ``Report.environment``, ``Report.settings``, ``Report.generation``: the schema leaves them open
  (package versions keyed by package name; provenance of whatever backend and scorer ran).
- ``Claim.outcomes`` (cell → diagnostic → outcome) and ``Claim.thresholds`` (diagnostic → the
  thresholds the claim overrides), ``AuditSummary.passes`` (diagnostic → count): keyed by ids and
  names, not records with fixed fields.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from msgspec import UNSET, Struct, UnsetType

Number = int | float  # a JSON number: ints stay ints (see the module docstring)


class Reason(Struct, frozen=True, kw_only=True):
    """Why a diagnostic came out as it did (or what it could not check)."""

    code: str
    message: str


class Diagnostic(Struct, frozen=True, kw_only=True):
    """One diagnostic of one cell: D1 reliability, D2 fresh and D4 transfer use this type as it is."""

    outcome: str  # pass | fail | insufficient
    reasons: list[Reason]
    estimates: dict[str, Any]
    thresholds: dict[str, Any]
    details: dict[str, Any] | UnsetType = UNSET  # always written by acards; optional in the schema


class Relabel(Struct, frozen=True, kw_only=True):
    """A permissive pass of a declared class observed as shrinkage."""

    declared: str
    observed: str


class MechanismDiagnostic(Diagnostic, frozen=True, kw_only=True):
    """D3: the observed class, the declared one, and the outcome under each coding."""

    observed: str | None
    declared: str | None
    strict: str
    permissive: str
    relabel: Relabel | None


class CostDiagnostic(Diagnostic, frozen=True, kw_only=True):
    """The deployment-cost guard; ``measurable_cost`` is None when insufficient."""

    measurable_cost: bool | None


class Diagnostics(Struct, frozen=True, kw_only=True):
    """The five diagnostics of a cell, in the standard's order (acards.vocabulary.DIAGNOSTICS)."""

    reliability: Diagnostic
    fresh: Diagnostic
    mechanism: MechanismDiagnostic
    transfer: Diagnostic
    cost: CostDiagnostic

    def by_name(self, name: str) -> Diagnostic:
        """The diagnostic called ``name`` (one of acards.vocabulary.DIAGNOSTICS)."""
        if name not in self.__struct_fields__:
            raise KeyError(name)
        return getattr(self, name)


class FullCard(Struct, frozen=True, kw_only=True):
    """Does the cell pass D1–D4 under strict and permissive coding; ``headline``: under its own."""

    strict: bool
    permissive: bool
    headline: bool | UnsetType = UNSET


class Cell(Struct, frozen=True, kw_only=True):
    id: str
    coding_mode: str  # strict | permissive
    diagnostics: Diagnostics
    full_card: FullCard
    judges: dict[str, Any] | UnsetType = UNSET  # several scorers (acards.pipeline.judges): per-scorer numbers, κ


class Discrepancy(Struct, frozen=True, kw_only=True):
    """One way a claim's ``reported`` block differs from the recomputation (SPEC §8)."""

    cell: str | None | UnsetType = UNSET  # None: the claim as a whole
    diagnostic: str | None | UnsetType = UNSET
    field: str
    reported: Any
    recomputed: Any
    tolerance: Number | None | UnsetType = UNSET
    message: str | UnsetType = UNSET


class Claim(Struct, frozen=True, kw_only=True):
    """A claim's verdict under its own thresholds, and whether what it reports is reproduced."""

    id: str
    statement: str | UnsetType = UNSET
    cells: list[str] | UnsetType = UNSET
    requires: list[str] | UnsetType = UNSET
    verdict: str  # supported | unsupported | insufficient
    outcomes: dict[str, dict[str, str]] | UnsetType = UNSET
    scorers: dict[str, str] | UnsetType = UNSET  # require_all_scorers: the verdict under each scorer
    broken_by: list[str] | UnsetType = UNSET  # require_all_scorers: the scorers under which it is not supported
    thresholds: dict[str, Any] | UnsetType = UNSET
    discrepancies: list[Discrepancy]
    reproduced: bool


class NearMiss(Struct, frozen=True, kw_only=True):
    """A cell that fails the full card: how many of D1–D4 it passed, and by how much it fell short."""

    cell: str
    passed: int
    failed: list[str]
    shortfall: Number | None  # None: a categorical failure


class FullCardCounts(Struct, frozen=True, kw_only=True):
    strict: int | UnsetType = UNSET  # always written by acards; optional in the schema
    permissive: int | UnsetType = UNSET


class AuditSummary(Struct, frozen=True, kw_only=True):
    """Passes per diagnostic and full-card passes over cells, with the near misses ranked."""

    cells: int
    passes: dict[str, int]
    full_card: FullCardCounts
    near_misses: list[NearMiss]


class CardRef(Struct, frozen=True, kw_only=True):
    """The card a report is about: its id, version and the sha256 of the card file."""

    id: str
    version: int
    sha256: str
    title: str | UnsetType = UNSET


class EvidenceCheck(Struct, frozen=True, kw_only=True):
    """One evidence pointer of the card and whether its digest matched."""

    pointer: str
    path: str
    kind: str | UnsetType = UNSET  # file | folder
    sha256: str
    actual: str | None | UnsetType = UNSET
    ok: bool


class EnvelopeRef(Struct, frozen=True, kw_only=True):
    """The signed envelope a report was verified against: payload digest and verified signers."""

    digest: str
    signers: list[str]


class PreregistrationDeviation(Struct, frozen=True, kw_only=True):
    """One way the card departs from its pre-registered plan (acards.card.analysis_plan.Deviation)."""

    kind: str
    pointer: str
    planned: Any
    actual: Any


class Preregistration(Struct, frozen=True, kw_only=True):
    """The card against the plan it names: logged_at is the registry's time (None from a local copy)."""

    entry: str
    logged_at: str | None
    matched: bool
    deviations: list[PreregistrationDeviation]
    source: str  # registry | card folder
    signers: list[str]


class Report(Struct, frozen=True, kw_only=True):
    """What `acards verify` writes (schema/report-1.0.schema.json)."""

    acards_version: str
    reproduced: bool
    card: CardRef
    evidence: list[EvidenceCheck]
    environment: dict[str, Any]
    settings: dict[str, Any]
    cells: list[Cell]
    claims: list[Claim]
    audit: AuditSummary
    generation: dict[str, Any]
    envelope: EnvelopeRef | UnsetType = UNSET  # only when verified with --envelope
    preregistration: Preregistration | UnsetType = UNSET  # only when the card names a pre-registration


class AuditCell(Cell, frozen=True, kw_only=True):
    """A cell of `acards audit`: its id is ``<card id>:<cell id>``, ``card`` the card id."""

    card: str


class Audit(Struct, frozen=True, kw_only=True):
    """What `acards audit` prints: every cell of several cards and the summary over all of them."""

    acards_version: str
    cells: list[AuditCell]
    summary: AuditSummary


D = TypeVar("D", bound=Diagnostic)


def extend(base: Diagnostic, kind: type[D], **fields: Any) -> D:
    """``base`` as a ``kind`` (MechanismDiagnostic, CostDiagnostic) with that kind's own fields."""
    return kind(**msgspec.structs.asdict(base), **fields)


def _plain_float(value: Any) -> Any:
    if isinstance(value, float):  # numpy's float64 is a float; json.dumps writes it as one
        return float(value)
    raise NotImplementedError(f"{type(value).__name__} has no JSON form")


def as_builtins(value: Struct) -> Any:
    """A Report (or Audit) as JSON data: dicts in field order, lists, str, numbers, bool, None."""
    return msgspec.to_builtins(value, enc_hook=_plain_float)


def from_builtins(data: Any) -> Report:
    """JSON data as a Report, *unchecked* beyond the types (raises msgspec.ValidationError).

    Data from outside (a file, a signed payload) goes through acards.report.stored.check_report,
    which checks it against report-1.0 first."""
    return msgspec.convert(data, Report)
