"""`acards render --format latex`: the card's claims and diagnostics tables for a paper appendix
(docs/badges-and-latex.md).

A fragment for ``\\input{}``, in base LaTeX (tabular, ``\\hline``; no package beyond ``fontenc``),
rendered from templates/card.tex.j2.  Every value the template prints goes through
:func:`latex_escape` unless the code made it :class:`Tex`: the ten special characters become their
commands, the Unicode the numbers and words use (Δ, ρ, ±, −, †, …) becomes LaTeX, Latin letters
with accents stay (T1 with UTF-8 input prints them), and any other character (a control, a
bidirectional control, a script pdflatex has no glyph for) is shown as ``[U+XXXX]``, so no card
text can add a command, break the document or change how it reads.
"""

from __future__ import annotations

import functools

import jinja2

from acards.errors import AcardsError

_SPECIAL = {
    "\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "%": r"\%",
    "_": r"\_", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}",
    "<": r"\textless{}", ">": r"\textgreater{}", "|": r"\textbar{}", '"': r"\textquotedbl{}",
    "`": r"\textasciigrave{}", "'": r"\textquotesingle{}",
}
_UNICODE = {
    "Δ": r"$\Delta$", "δ": r"$\delta$", "ρ": r"$\rho$", "κ": r"$\kappa$", "α": r"$\alpha$", "σ": r"$\sigma$",
    "±": r"$\pm$", "−": r"$-$", "×": r"$\times$", "≤": r"$\leq$", "≥": r"$\geq$", "≈": r"$\approx$",
    "→": r"$\rightarrow$", "·": r"$\cdot$", "†": r"\dag{}", "‖": r"$\|$", "²": r"\textsuperscript{2}",
    "—": "---", "–": "--", "…": r"\ldots{}", "‘": "`", "’": "'", "“": "``", "”": "''", "\u00a0": "~",
    "⚑": r"\textbf{!}",
}
_ACCENTED = range(0x00C0, 0x0180)  # Latin-1 letters and Latin Extended-A: T1 and utf8 input print them
_NOT_SHOWN = {0x00D7, 0x00F7}  # × and ÷ are maths, mapped above or shown as code points


class Tex(str):
    """LaTeX the code wrote (a command, an escaped value): printed as it is."""


def latex_escape(value) -> str:
    """``value`` as inert LaTeX text on one line (see the module's docstring)."""
    if isinstance(value, Tex):
        return value
    out = []
    text = " ".join(str(value).split())
    for i, ch in enumerate(text):
        if ch == "-" and text[i + 1: i + 2] == "-":
            out.append("-{}")  # no -- or --- ligature (en and em dashes) from text
        elif ch in _SPECIAL:
            out.append(_SPECIAL[ch])
        elif ch in _UNICODE:
            out.append(_UNICODE[ch])
        elif " " <= ch <= "~" or (ord(ch) in _ACCENTED and ord(ch) not in _NOT_SHOWN):
            out.append(ch)
        else:
            out.append(rf"\texttt{{[U+{ord(ch):04X}]}}")
    return "".join(out)


def _finalize(value):
    if value is None:
        return "---"
    return latex_escape(value)


@functools.lru_cache(maxsize=None)
def latex_environment() -> jinja2.Environment:
    """The card pages' environment (acards.present.render) with LaTeX escaping on every output."""
    from acards.numbers import count, format_number
    from acards.present.render import _bar, environment

    env = environment().overlay(finalize=_finalize, autoescape=False)
    env.filters["num"] = format_number
    env.filters["count"] = count
    env.globals["bar"] = lambda diagnostic, what, t_rule=False: str(_bar(diagnostic, what, t_rule))
    return env


def render_latex(card_data: dict, report) -> str:
    """The appendix fragment of a card and its :class:`~acards.report.model.Report` (pure)."""
    import jinja2 as _jinja2

    from acards.present.render import _bad_report, clip_note, reduction_clipped
    from acards.vocabulary import DIAGNOSTICS, GAP_SPLITS

    if (report.card.id, report.card.version) != (card_data.get("id"), card_data.get("version")):
        raise AcardsError("usage.report-mismatch",
                          f"the report is for card {report.card.id} version {report.card.version}, not "
                          f"{card_data.get('id')} version {card_data.get('version')}",
                          "verify this card and render it with that report: `acards verify CARD --report REPORT.json`")
    t_rule = report.settings.get("standard") == "1.1"
    context = {"card": card_data, "report": report, "diagnostics": DIAGNOSTICS, "splits": GAP_SPLITS,
               "report_claims": {claim.id: claim for claim in report.claims}, "t_rule": t_rule,
               "clipped": reduction_clipped(report, t_rule), "clip_note": clip_note()}
    try:
        return latex_environment().get_template("card.tex.j2").render(context)
    except (_jinja2.UndefinedError, KeyError) as error:
        raise _bad_report(f"a field the LaTeX appendix needs is missing: {error}", error) from error
