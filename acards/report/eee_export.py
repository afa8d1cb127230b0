"""A verification report as an Every Eval Ever aggregate evaluation log (eval.schema.json of the
every_eval_ever package): one evaluation result per cell and diagnostic, with its uncertainty,
and the evaluator's relationship to the model in the source metadata.

Each diagnostic gives its headline number as the score: the reduction Δ of the installed audit gap
(reliability, fresh, transfer; higher is better), α_T of the mechanism diagnostic, and the
capability change δ of the cost guard.  Its standard error, the confidence interval where the
report has one, the item count, and the other estimates, the outcome and its reason codes go with
it.  A diagnostic without its headline number (an insufficient one often has none) is left out.
The log is checked by every_eval_ever's own pydantic model before it is written, so the export
needs the package; it is imported only here.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from acards.errors import AcardsError
from acards.report.model import Report
from acards.vocabulary import DIAGNOSTICS

RELATIONSHIPS = ("first_party", "third_party", "collaborative", "other")
DEPLOYMENTS = ("self_deployed", "externally_managed", "unknown")
AVAILABILITY = ("open_weights", "closed_weights", "unknown")

# The range of each headline: scores lie in [0, 1], so a gap lies in [-1, 1] and a reduction of
# one gap by another in [-2, 2]; δ is a difference of accuracies; α_T is a ratio of norms.
BOUNDS = {"reduction": (-2.0, 2.0), "delta": (-1.0, 1.0), "alpha_t": ("-Infinity", "Infinity")}
# diagnostic -> (the estimate that is the score, its standard error, what the number is)
HEADLINE = {
    "reliability": ("reduction", "se_total", "held-out reduction of the installed audit gap (Δ = gap_U − gap_D)"),
    "fresh": ("reduction", "se_total", "reduction of the audit gap on fresh items"),
    "mechanism": ("alpha_t", None, "α_T, the share of the task update the defense keeps (a mechanism class, not a ranking)"),
    "transfer": ("reduction", "se_total", "reduction of the audit gap on the transfer task"),
    "cost": ("delta", "se", "capability change δ = acc_D − acc_U"),
}
SE_METHOD = "acards: cluster-robust over subjects, with the seed term (docs/report.md#estimates)"


@dataclass(frozen=True)
class Source:
    """Who evaluated, and the model: what the report cannot say itself."""

    organization: str
    relationship: str  # one of RELATIONSHIPS
    model_id: str  # Hugging Face format, developer/name
    deployment: str = "unknown"
    availability: str = "unknown"


def _text(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value).lower() if isinstance(value, bool) else str(value)


def _result(report: Report, cell, name: str) -> dict[str, Any] | None:
    diagnostic = cell.diagnostics.by_name(name)
    estimate, se_name, meaning = HEADLINE[name]
    score = diagnostic.estimates.get(estimate)
    if not isinstance(score, (int, float)) or isinstance(score, bool):
        return None
    details = {"outcome": diagnostic.outcome, "reasons": "; ".join(r.code for r in diagnostic.reasons)}
    details.update((key, _text(value)) for key, value in sorted(diagnostic.estimates.items())
                   if key != estimate and value is not None and not isinstance(value, (dict, list)))
    observed = getattr(diagnostic, "observed", None)
    if observed:
        details["observed_mechanism"] = str(observed)
    uncertainty: dict[str, Any] = {}
    se = diagnostic.estimates.get(se_name) if se_name else None
    if isinstance(se, (int, float)):
        uncertainty["standard_error"] = {"value": float(se), "method": SE_METHOD}
    low, high = diagnostic.estimates.get("ci_low"), diagnostic.estimates.get("ci_high")
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        uncertainty["confidence_interval"] = {"lower": float(low), "upper": float(high), "confidence_level": 0.95,
                                              "method": "acards (docs/report.md#estimates)"}
    if isinstance(diagnostic.estimates.get("n_items"), int):
        uncertainty["num_samples"] = diagnostic.estimates["n_items"]
    card = report.card
    score_details: dict[str, Any] = {"score": float(score), "details": details}
    if uncertainty:
        score_details["uncertainty"] = uncertainty
    return {
        "evaluation_result_id": f"{cell.id}/{name}",
        "evaluation_name": f"{card.id}/{cell.id}/{name}",
        "source_data": {"dataset_name": f"evidence of Acceptance Card {card.id} v{card.version}, cell {cell.id}",
                        "source_type": "other", "additional_details": {"card_sha256": card.sha256}},
        "metric_config": {"evaluation_description": f"acards {name} diagnostic: {meaning}",
                          "metric_id": f"acards.{name}.{estimate}", "metric_name": f"{name} {estimate}",
                          "lower_is_better": False, "score_type": "continuous",
                          "min_score": BOUNDS[estimate][0], "max_score": BOUNDS[estimate][1]},
        "score_details": score_details,
    }


def evaluation_log(report: Report, source: Source, retrieved: float | None = None) -> dict[str, Any]:
    """The report as one EEE aggregate log (a plain dict), checked by every_eval_ever's model."""
    try:
        from every_eval_ever.eval_types import EvaluationLog
        from every_eval_ever.schema import get_schema_version
    except ImportError:
        raise AcardsError("export.missing-extra", "exporting Every Eval Ever logs needs every_eval_ever",
                          "install every-eval-ever (docs/importing.md#every-eval-ever)") from None
    if not report.reproduced:
        raise AcardsError("export.not-reproduced", "the report says the card was not reproduced",
                          "export the report of a card that `acards verify` reproduced (exit 0)")
    for value, allowed, option in ((source.relationship, RELATIONSHIPS, "--evaluator-relationship"),
                                   (source.deployment, DEPLOYMENTS, "--deployment"),
                                   (source.availability, AVAILABILITY, "--availability")):
        if value not in allowed:
            raise AcardsError("export.bad-option", f"{option} {value!r} is not one of {', '.join(allowed)}", "pick one of them")
    developer, slash, _name = source.model_id.partition("/")
    if not slash or not developer or not _name:
        raise AcardsError("export.bad-option", f"--model-id {source.model_id!r} is not developer/name",
                          "name the model as on the Hugging Face Hub, e.g. my-org/my-model")
    results = [result for cell in report.cells for name in DIAGNOSTICS if (result := _result(report, cell, name))]
    if not results:
        raise AcardsError("export.no-value", "no diagnostic of the report has its headline estimate",
                          "an insufficient diagnostic has few estimates; add evidence")
    stamp = repr(float(time.time() if retrieved is None else retrieved))
    card = report.card
    log = {
        "schema_version": get_schema_version(),
        "evaluation_id": f"acards/{card.id}/{source.model_id}/{stamp}",
        "retrieved_timestamp": stamp,
        "source_metadata": {
            "source_name": f"Acceptance Card {card.id} v{card.version}", "source_type": "evaluation_run",
            "source_organization_name": source.organization, "evaluator_relationship": source.relationship,
            "additional_details": {"card_id": card.id, "card_version": str(card.version), "card_sha256": card.sha256,
                                   "reproduced": "true", "verified_by": f"acards {report.acards_version}"},
        },
        "eval_library": {"name": "acards", "version": report.acards_version},
        "model_info": {"name": source.model_id, "id": source.model_id, "developer": developer,
                       "additional_details": {"deployment_type": source.deployment, "model_availability": source.availability}},
        "evaluation_results": results,
    }
    EvaluationLog.model_validate(log)  # a refusal here is a bug in acards: it surfaces as internal.error
    return log


def evaluation_log_json(log: dict[str, Any]) -> str:
    return json.dumps(log, indent=2, ensure_ascii=False) + "\n"
