"""The Jinja environment and the templates acards renders.

One environment for every template: StrictUndefined (a template naming a field that does not exist
fails loudly instead of printing nothing); autoescaping for HTML.  The card pages take the report
as its types (acards.report.model); a field the report leaves out (``UNSET``) reads as undefined,
like a missing key, so ``x.field is defined`` and ``x.field|default(...)`` work on it.
"""

from __future__ import annotations

import functools
import re
import textwrap
from pathlib import Path

import jinja2
import markupsafe
from msgspec import UNSET

from acards.card.validate import SCHEMA_NAME
from acards.diagnostics.common import critical_symbol
from acards.errors import AcardsError, Location
from acards.numbers import CLIPPED, bound_text, clip, count, format_number, interval_text, is_clipped, p_value_text
from acards.present.badge import preregistration_block, preregistration_state
from acards.present.forest import GAP_BOUNDS, REDUCTION_BOUNDS, critical, forest_svg, range_text
from acards.present.paired import AUDIT_SHARE_FLAG, SCORE_BOUNDS, audit_share, audit_side, condition_means, has_means, paired_svg
from acards.report.model import Report
from acards.report.stored import check_report
from acards.resources import data_dir
from acards.schemas import load_schema, resolve
from acards.vocabulary import DIAGNOSTICS, GAP_SPLITS


class _Environment(jinja2.Environment):
    """Reads a field the report leaves out (msgspec's ``UNSET``) as an undefined name."""

    def getattr(self, obj, attribute):
        value = super().getattr(obj, attribute)
        return self.undefined(obj=obj, name=attribute) if value is UNSET else value

    def getitem(self, obj, argument):
        value = super().getitem(obj, argument)
        return self.undefined(obj=obj, name=argument) if value is UNSET else value


def environment() -> jinja2.Environment:
    env = _Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["html", "html.j2"]),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["doc"] = schema_comment
    return env


def schema_node(path: str) -> dict:
    """The card schema's node for a dotted path; ``name[]`` steps into an array's items."""
    schema = load_schema(SCHEMA_NAME)
    node = schema
    for step in path.split("."):
        is_array = step.endswith("[]")
        node = resolve(schema, resolve(schema, node)["properties"][step.removesuffix("[]")])
        if is_array:
            node = resolve(schema, node["items"])
    return resolve(schema, node)


def schema_comment(path: str, indent: int = 0) -> str:
    """The schema's description of ``path`` as YAML comment lines (no trailing newline)."""
    node = schema_node(path)
    text = node.get("description", "")
    if "enum" in node:
        text += " One of: " + ", ".join(map(str, node["enum"])) + "."
    if "default" in node:
        text += f" Default: {node['default']}."
    prefix = " " * indent + "# "
    return "\n".join(textwrap.wrap(text, width=98 - len(prefix), initial_indent=prefix, subsequent_indent=prefix))


def card_template(schema_ref: str | None = None) -> str:
    """The commented fill-in card that `acards init` writes; its modeline names ``schema_ref`` (default:
    the local schema file, acards.schemas.editor_reference; docs/editors.md)."""
    from acards.schemas import editor_reference

    return environment().get_template("card.yaml.j2").render(schema_id=schema_ref or editor_reference(SCHEMA_NAME))


# --- the rendered card pages (docs/rendering.md) -------------------------------------------------

PAGE_FORMATS = ("md", "html")
_HTTPS = re.compile(r"https://[^\s<>\"'`\\]+")
_MD_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:+-]*")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#~!@])")  # '@': no e-mail autolink, no @mention
# GitHub autolinks bare URLs (at the ':' of '://'), 'www.' and e-mail addresses: a backslash before
# the ':' and the '.' of 'www.' (and before '@', above) keeps the text as written but unlinked.
_MD_AUTOLINK = re.compile(r"(?i)(:)(?=//)|(?<=www)(\.)")
# Bidirectional controls (LRM, RLM, embeddings, overrides, isolates): an unterminated one would
# reverse the rest of the page. Markdown shows each as [U+XXXX]; HTML isolates the value in <bdi>.
BIDI_CONTROLS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_FOREST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.svg")


def is_https_url(value) -> bool:
    """True for an https link the pages may render as a link (the card schema's httpsUrl rule, and
    no bidirectional control, which would make the link text read differently from the link)."""
    return isinstance(value, str) and _HTTPS.fullmatch(value) is not None and BIDI_CONTROLS.search(value) is None


def md_escape(value) -> str:
    """Card text as inert Markdown on one line: HTML-significant characters become entities and
    Markdown syntax is backslash-escaped, so no renderer turns it into markup, links or tables."""
    text = " ".join(visible_bidi(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_SPECIAL.sub(r"\\\1", text)
    return _MD_AUTOLINK.sub(lambda m: "\\" + m.group(), text)


def visible_bidi(value) -> str:
    """Text with each bidirectional control shown as [U+XXXX]."""
    return BIDI_CONTROLS.sub(lambda m: f"[U+{ord(m.group()):04X}]", str(value))


def isolate_bidi(value):
    """Card text holding a bidirectional control is isolated in <bdi>, so it cannot reorder what follows
    (the ``finalize`` of the card pages and of the registry site's pages)."""
    if isinstance(value, str) and not isinstance(value, markupsafe.Markup) and BIDI_CONTROLS.search(value):
        return markupsafe.Markup("<bdi>%s</bdi>") % value
    return value


def _md_finalize(value):
    """Every ``{{ … }}`` of a Markdown template is escaped unless the code made it Markup."""
    if isinstance(value, markupsafe.Markup):
        return str(value)
    return md_escape(value)


def _number(value) -> markupsafe.Markup | str:
    if value is None or isinstance(value, (bool, int, float)):
        return markupsafe.Markup(format_number(value))
    return str(value)  # a string threshold or estimate: escaped like any text


def _interval(estimate, se, z) -> markupsafe.Markup:
    return markupsafe.Markup(interval_text(estimate, se, z))


def _bar_parts(diagnostic, what: str, t_rule: bool = False) -> tuple:
    """The estimate, SE, multiplier, df and bounds of one of a diagnostic's ± intervals (see :func:`_bar`)."""
    e = diagnostic.estimates
    df = None
    bounds = GAP_BOUNDS
    if what == "gap":
        estimate, se = e.get("gap_undefended"), e.get("se_gap_undefended_total", e.get("se_gap_undefended"))
        crit, df = critical(diagnostic, gap=True)
    elif what == "defended":
        estimate, se, crit = e.get("gap_defended"), e.get("se_gap_defended"), diagnostic.thresholds["z"]
    elif what == "control":
        estimate, se, crit = e.get("control_margin"), e.get("se_control_margin"), diagnostic.thresholds["z"]
        bounds = REDUCTION_BOUNDS
        lower = e.get("control_margin_lower")
        if t_rule and lower is not None and se:  # the report gives the bound, not the t value: read it back
            crit = (estimate - lower) / se
    elif what == "cost":
        estimate, se = e.get("delta"), e.get("se")
        crit, df = critical(diagnostic)
    else:
        estimate, se = e.get("reduction"), e.get("se_total")
        crit, df = critical(diagnostic)
        bounds = REDUCTION_BOUNDS
    return estimate, se, crit, df, bounds


def _bar(diagnostic, what: str, t_rule: bool = False) -> markupsafe.Markup:
    """``estimate [low, high]`` of one of a diagnostic's numbers, with the multiplier its rule uses:
    the card's z under standard 1.0; under 1.1 the report's t critical value, named with its df
    (``t(7.3)=2.41``) after the interval (SPEC §10.2).  ``what``: ``reduction`` (Δ ± ·SE_tot),
    ``gap`` (G_U, on the gap's own SE and critical value), ``defended`` (G_D ± z·SE, descriptive),
    ``cost`` (δ ± ·SE), ``control`` (Δ_D − Δ_C ± ·SE; ``t_rule``: the report is 1.1).  An end beyond
    the quantity's range (forest.GAP_BOUNDS, REDUCTION_BOUNDS) is cut back to it and marked †."""
    estimate, se, crit, df, bounds = _bar_parts(diagnostic, what, t_rule)
    text = interval_text(estimate, se, crit, bounds)
    if df is not None and se is not None and estimate is not None:
        text += f" {critical_symbol(crit, df)}"
    return markupsafe.Markup(text)


def _ci(estimates: dict) -> markupsafe.Markup:
    """The CI column (bootstrap, or the t interval of a 1.1 report) of Δ, cut back to Δ's range."""
    if estimates.get("ci_low") is None:
        return markupsafe.Markup("—")
    high = estimates.get("ci_high")
    if high is None:
        return markupsafe.Markup(f"[{format_number(estimates['ci_low'])}, —]")
    return markupsafe.Markup(bound_text(estimates["ci_low"], high, REDUCTION_BOUNDS))


def _clipped(report: Report, t_rule: bool) -> bool:
    """Whether any interval on the page is cut back to its quantity's range (the page then says so)."""
    for cell in report.cells:
        d = cell.diagnostics
        shown = [(d.by_name(name), what) for _, name, _ in GAP_SPLITS for what in ("gap", "defended", "reduction")]
        shown.append((d.cost, "cost"))
        if d.mechanism.estimates.get("control_margin") is not None:
            shown.append((d.mechanism, "control"))
        for diagnostic, what in shown:
            try:
                estimate, se, crit, _, bounds = _bar_parts(diagnostic, what, t_rule)
            except KeyError:  # a missing multiplier: the template names it, with its line
                continue
            if is_clipped(estimate, se, crit, bounds):
                return True
        for _, name, _ in GAP_SPLITS:
            e = d.by_name(name).estimates
            if e.get("ci_low") is not None and e.get("ci_high") is not None and \
                    any(clip(e["ci_low"], e["ci_high"], REDUCTION_BOUNDS)[2:]):
                return True
    return False


def clip_note() -> str:
    """What every page (HTML, Markdown, LaTeX) says under its intervals when one is cut back (†)."""
    return (f"{CLIPPED} marks an interval end cut back to the range its quantity can take: {range_text(GAP_BOUNDS)} "
            f"for a gap and δ, {range_text(REDUCTION_BOUNDS)} for a reduction (scores lie in {range_text(SCORE_BOUNDS)}).")


def reduction_clipped(report: Report, t_rule: bool) -> bool:
    """Whether any Δ ± ·SE_tot interval (the forest plot's, the LaTeX table's) is cut back to Δ's range."""
    for cell in report.cells:
        for _, name, _ in GAP_SPLITS:
            try:
                estimate, se, crit, _, bounds = _bar_parts(cell.diagnostics.by_name(name), "reduction", t_rule)
            except KeyError:  # a missing multiplier: the template names it, with its line
                continue
            if is_clipped(estimate, se, crit, bounds):
                return True
    return False


VERDICT_TONE = {"supported": "pass", "unsupported": "fail", "insufficient": "insufficient"}


def verdict_summary(card_data: dict, report: Report) -> dict:
    """What the top of a card page says first (docs/rendering.md#verdict-first): the headline
    claim (the card's first claim) and its verdict, every claim's verdict, the full-card passes
    under strict and permissive coding, and the tone of the banner (the headline verdict's)."""
    verdicts = {claim.id: claim for claim in report.claims}
    claims = [{"id": c["id"], "statement": c.get("statement", ""), "verdict": verdicts[c["id"]].verdict,
               "reproduced": verdicts[c["id"]].reproduced} for c in card_data["claims"] if c["id"] in verdicts]
    headline = claims[0] if claims else None
    strict = sum(1 for cell in report.cells if cell.full_card.strict)
    permissive = sum(1 for cell in report.cells if cell.full_card.permissive)
    return {"headline": headline, "claims": claims, "strict": strict, "permissive": permissive,
            "cells": len(report.cells), "coding_mode": card_data.get("coding_mode", "strict"),
            "tone": VERDICT_TONE.get(headline["verdict"], "other") if headline else "other",
            **_preregistration(report)}


def _preregistration(report: Report) -> dict:
    """The pre-registration badge's facts (acards.present.badge's reading): absent (a report that names
    none, or was written before pre-registration existed), matched (with its date) or deviated."""
    block = preregistration_block(report)
    if block is None:
        return {"preregistration": None, "preregistered_at": None}
    at = block.get("logged_at") if isinstance(block, dict) else getattr(block, "logged_at", None)
    return {"preregistration": preregistration_state(report), "preregistered_at": at if at is not UNSET else None}


def _mean(c: dict, side: str) -> markupsafe.Markup:
    """A condition's mean under one framing ± z·SE (clustered), cut back to the score range [0, 1]."""
    return markupsafe.Markup(interval_text(c[side], c[f"se_{side}"], c["z"], SCORE_BOUNDS))


def _share(estimates: dict) -> markupsafe.Markup:
    share = audit_share(estimates)
    return markupsafe.Markup(format_number(share))


def _seed_classes(mechanism) -> list[dict] | None:
    """Each pinned seed's observed class ({seed, observed, decides}) when several seeds were judged; none otherwise.
    ``decides`` marks the seed whose class codes the cell, only when the seeds disagree (else it is moot)."""
    details = mechanism.details if isinstance(mechanism.details, dict) else {}
    per_seed = details.get("per_seed")
    if not per_seed:
        return None
    disagree = details.get("seeds_agree") is False
    return [{"seed": entry.get("seed"), "observed": entry.get("observed") or "none",
             "decides": disagree and entry.get("seed") == details.get("decided_by_seed")} for entry in per_seed]


def _md_code(value) -> markupsafe.Markup:
    """An id, name, path or digest: a code span when it is plain, escaped text otherwise."""
    text = str(value)
    if _MD_PLAIN.fullmatch(text):
        return markupsafe.Markup(f"`{text}`")
    return markupsafe.Markup(md_escape(text))


def _md_link(text, url) -> markupsafe.Markup:
    """``[text](<url>)`` for an https url; the escaped text alone otherwise."""
    if is_https_url(url):
        return markupsafe.Markup(f"[{md_escape(text)}](<{url}>)")
    return markupsafe.Markup(md_escape(text))


@functools.lru_cache(maxsize=None)
def page_environment(fmt: str) -> jinja2.Environment:
    """environment() with the page filters; Markdown pages also escape every output by default."""
    env = environment()
    if fmt == "md":
        env = env.overlay(finalize=_md_finalize)
        env.filters["code"] = _md_code
        env.globals["link"] = _md_link
    else:
        env = env.overlay(finalize=isolate_bidi)
        env.filters["bidi_visible"] = visible_bidi  # where no element can isolate: <title>
    env.filters["num"] = _number
    env.filters["p"] = p_value_text  # plain text: the page escapes the '<' of "< 1e-6"
    env.filters["count"] = count
    env.globals["ci"] = _ci
    env.globals["seed_classes"] = _seed_classes
    env.globals["interval"] = _interval
    env.globals["bar"] = _bar
    env.globals["ordered"] = _ordered
    env.globals["condition_means"] = condition_means
    env.globals["mean"] = _mean
    env.globals["audit_share"] = _share
    env.globals["audit_side"] = audit_side
    env.tests["https_url"] = is_https_url
    return env


def card_overrides(card_data: dict) -> list[dict]:
    """Card.overrides() of plain card data, in a fixed order (card first, then claims in order;
    diagnostics in the standard's order; names alphabetically), whatever the key order of the data."""
    from acards.card.model import Card

    found = Card(path=Path("card.yaml"), data=card_data, source=None, sha256="").overrides()  # type: ignore[arg-type]
    scopes = ["card"] + [f"claim {c['id']}" for c in card_data["claims"]]
    return sorted(found, key=lambda o: (scopes.index(o["scope"]), DIAGNOSTICS.index(o["diagnostic"]), o["name"]))


def _threshold_order() -> dict[str, list[str]]:
    from acards.card.validate import threshold_defaults

    return {group: list(values) for group, values in threshold_defaults().items()}


def _ordered(mapping: dict, order) -> list[tuple[str, object]]:
    """A mapping's items: the keys named in ``order`` first, in that order, then the rest sorted."""
    first = [key for key in order if key in mapping]
    return [(key, mapping[key]) for key in first + sorted(k for k in mapping if k not in first)]


def _bad_report(message: str, error: BaseException | None = None) -> AcardsError:
    where = ""
    tb = error.__traceback__ if error is not None else None
    while tb is not None:  # jinja rewrites tracebacks so template frames carry the template line
        name = tb.tb_frame.f_code.co_filename
        if name.endswith(".j2"):
            where = f" ({Path(name).name} line {tb.tb_lineno})"
        tb = tb.tb_next
    return AcardsError("usage.bad-report", message + where,
                       "render the card with the report `acards verify CARD --report REPORT.json` wrote for it")


def render_card(card_data: dict, report: Report, fmt: str, signers: list[dict] = (), *, forest_file: str | None = None,
                paired_file: str | None = None, attestations: list[dict] = ()) -> str:
    """The card page in ``fmt`` ("md" or "html"): a pure, deterministic function of the card data
    (``Card.data``), its verification report (a :class:`Report`: from ``verify``, or read back with
    :func:`read_report` / acards.report.stored.check_report) and the signers ({keyid, name?}; empty: unsigned).

    HTML embeds the forest plot and the paired plot inline. Markdown shows the same numbers as
    tables and, when ``forest_file`` (``paired_file``) names an SVG file written beside it from
    ``forest_svg(report)`` (``paired_svg(report)``), also references the plot as an image.

    ``attestations``: the hook for reproduction attestations ({signer, assurance, reproduced});
    each is shown as a badge under the verdict. The registry renders without them (they are logged
    after the card), so a published page re-renders byte for byte.
    """
    if fmt not in PAGE_FORMATS:
        raise AcardsError("usage.bad-format", f"no card page format {fmt!r}", "use md or html")
    for plot in (forest_file, paired_file):
        if plot is not None and not _FOREST_NAME.fullmatch(plot):
            raise AcardsError("usage.bad-format", f"{plot!r} is not a plain .svg file name",
                              "name the plot file like forest.svg (letters, digits, '.', '_', '-')")
    if not isinstance(report, Report):
        raise _bad_report(f"the report is a {type(report).__name__}, not a Report: read it with read_report "
                          "(or acards.report.stored.check_report for JSON data)")
    meta = report.card
    if (meta.id, meta.version) != (card_data.get("id"), card_data.get("version")):
        raise AcardsError("usage.report-mismatch",
                          f"the report is for card {meta.id} version {meta.version}, not "
                          f"{card_data.get('id')} version {card_data.get('version')}",
                          "verify this card and render it with that report: `acards verify CARD --report REPORT.json`")
    try:
        ordered_signers = sorted(signers, key=lambda s: (s["keyid"], s.get("name") or ""))
    except (KeyError, TypeError, AttributeError):
        raise AcardsError("usage.bad-signers", "each signer is a mapping with a keyid (and optionally a name)",
                          "pass signers as [{'keyid': ..., 'name': ...}]") from None
    try:
        overrides = card_overrides(card_data)
        t_rule = report.settings.get("standard") == "1.1"  # SPEC §10.2: t critical values, t interval
        context = {
            "card": card_data,
            "report": report,
            "signers": ordered_signers,
            "diagnostics": DIAGNOSTICS,
            "splits": GAP_SPLITS,
            "card_cells": {cell["id"]: cell for cell in card_data["cells"]},
            "report_claims": {claim.id: claim for claim in report.claims},
            "overrides": overrides,
            "card_overrides": {(o["diagnostic"], o["name"]): o for o in overrides if o["scope"] == "card"},
            "threshold_order": _threshold_order(),
            "forest": markupsafe.Markup(forest_svg(report)) if fmt == "html" else None,
            "forest_file": forest_file,
            "paired": markupsafe.Markup(paired_svg(report)) if fmt == "html" and has_means(report) else None,
            "paired_file": paired_file if has_means(report) else None,
            "has_means": has_means(report),
            "audit_share_flag": format_number(AUDIT_SHARE_FLAG),
            "summary": verdict_summary(card_data, report),
            "attestations": list(attestations),
            "t_rule": t_rule,
            "clipped": _clipped(report, t_rule),
            "clip_note": clip_note(),
        }
        return page_environment(fmt).get_template(f"card.{fmt}.j2").render(context)
    except jinja2.UndefinedError as error:
        raise _bad_report(f"a field the card page needs is missing: {error.message}", error) from error
    except KeyError as error:
        raise _bad_report(f"a field the card page needs is missing: {error}", error) from error
    except (TypeError, ValueError) as error:  # e.g. a number that is text: never from a report verify wrote
        raise _bad_report(f"a field the card page needs has the wrong type: {error}", error) from error


def read_report(path: Path, card=None) -> Report:
    """A verification report file (as `acards verify --report` writes it), checked against
    report-1.0 (acards.report.stored.check_report) and, given the loaded Card, against that card's
    id, version and file digest."""
    import json

    hint = "pass the JSON file `acards verify CARD --report REPORT.json` wrote for this card"
    from acards.files import read_input

    raw = read_input(path, what="report", missing="usage.bad-report", unreadable="usage.bad-report")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AcardsError("usage.bad-report", "the report is not UTF-8 text", hint, Location(str(path))) from None
    try:
        data = json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(f"{name} is not JSON")))
    except json.JSONDecodeError as error:
        raise AcardsError("usage.bad-report", f"the report is not valid JSON: {error.msg}", hint,
                          Location(str(path), error.lineno, error.colno)) from None
    except ValueError as error:
        raise AcardsError("usage.bad-report", f"the report is not valid JSON: {error}", hint, Location(str(path))) from None
    if not isinstance(data, dict):
        raise AcardsError("usage.bad-report", "the report is not a JSON object", hint, Location(str(path), pointer=""))
    report = check_report(data, hint=hint, file=str(path))
    if card is not None and (report.card.id, report.card.version, report.card.sha256) != \
            (card.data["id"], card.data["version"], card.sha256):
        raise AcardsError("usage.report-mismatch",
                          f"the report was made for card {report.card.id} version {report.card.version} "
                          f"(file sha256 {report.card.sha256[:12]}…), not for {card.path} "
                          f"({card.data['id']} version {card.data['version']}, sha256 {card.sha256[:12]}…)",
                          f"verify the card again: `acards verify {card.path} --report REPORT.json`", Location(str(path), pointer="/card"))
    return report
