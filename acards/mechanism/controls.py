"""The behavioral shrinkage control (SPEC §5.3): U scaled per module to D's norms."""

from __future__ import annotations

import math
from typing import Mapping

from acards.errors import AcardsError
from acards.mechanism.deltas import Delta, sq_norm
from acards.mechanism.signature import _same_modules


def control_scales(undefended: Mapping[str, Delta], defended: Mapping[str, Delta]) -> dict[str, float]:
    """Per module ‖ΔD_ℓ‖/‖ΔU_ℓ‖: the factor that gives U's B matrix D's norm (control:shrinkage, §5.3)."""
    scales = {}
    for name in _same_modules(undefended, defended):
        uu, dd = sq_norm(undefended[name]), sq_norm(defended[name])
        if uu == 0 and dd > 0:
            raise AcardsError(
                "weights.zero-update",
                f"module {name}: the undefended update is zero but the defended one is not, so no "
                "scaling of the undefended adapter can match its norm",
                "the shrinkage control needs an undefended update in every module the defense changes",
            )
        scales[name] = math.sqrt(dd / uu) if uu > 0 else 1.0
    return scales
