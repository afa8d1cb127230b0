"""The behavioral shrinkage control (SPEC §5.3, §10.7): U scaled per module to D's norms."""

from __future__ import annotations

import math
from typing import Iterable, Mapping

from acards.errors import AcardsError
from acards.mechanism.deltas import Delta, sq_norm
from acards.mechanism.signature import _same_modules


def control_scale(name: str, uu: float, dd: float) -> float:
    """‖ΔD_ℓ‖/‖ΔU_ℓ‖ from the squared norms of module ``name``: the factor that gives U's update
    D's norm; 1 where neither changed the module, an error where only D did."""
    if uu == 0 and dd > 0:
        raise AcardsError(
            "weights.zero-update",
            f"module {name}: the undefended update is zero but the defended one is not, so no "
            "scaling of the undefended update can match its norm",
            "the shrinkage control needs an undefended update in every module the defense changes",
        )
    return math.sqrt(dd / uu) if uu > 0 else 1.0


def control_scales(undefended: Mapping[str, Delta], defended: Mapping[str, Delta]) -> dict[str, float]:
    """Per module ‖ΔD_ℓ‖/‖ΔU_ℓ‖: the factor that gives U's B matrix (or U's dense update) D's norm
    (control:shrinkage, §5.3)."""
    return {name: control_scale(name, sq_norm(undefended[name]), sq_norm(defended[name]))
            for name in _same_modules(undefended, defended)}


def streamed_control_scales(pairs: Iterable[tuple[str, Delta, Delta]]) -> dict[str, float]:
    """:func:`control_scales` of (module, ΔU, ΔD) pairs read one module at a time (full weights),
    so that only one module's updates are held."""
    return {name: control_scale(name, sq_norm(du), sq_norm(dd)) for name, du, dd in pairs}
