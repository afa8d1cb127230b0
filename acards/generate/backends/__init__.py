"""Generation backends.  A backend turns batches of prompt token ids into generated token ids for
one :class:`~acards.generate.models.ModelSpec`; everything else (tokenizing, caching, ordering,
decoding ids to text) is shared and lives in :mod:`acards.generate.runner`.

- ``transformers`` (default, :mod:`.hf`): transformers + PEFT, on cuda, mps or cpu.
- ``vllm`` (optional, :mod:`.vllm_backend`): token-id prompts, per-request seeds, LoRA requests.
"""

from __future__ import annotations

from acards.errors import AcardsError
from acards.generate.backends.base import (
    BACKEND_PACKAGES,
    Backend,
    Decoding,
    package_versions,
    select_device,
)

BACKENDS = ("transformers", "vllm")

__all__ = ["BACKENDS", "Backend", "Decoding", "backend_class", "backend_versions", "package_versions", "select_device"]


def _unknown(name: str) -> AcardsError:
    return AcardsError("usage.bad-backend", f"unknown generation backend {name!r}", "use one of: " + ", ".join(BACKENDS))


def backend_versions(name: str) -> dict[str, str]:
    """The versions a backend's outputs are cached under, from package metadata: nothing is imported
    (the backend's class imports torch, and a fully cached run never needs it)."""
    if name not in BACKEND_PACKAGES:
        raise _unknown(name)
    return package_versions(*BACKEND_PACKAGES[name])


def backend_class(name: str) -> type:
    """The backend class for a name; importing it imports torch (transformers) or vllm."""
    if name == "transformers":
        from acards.generate.backends.hf import TransformersBackend

        return TransformersBackend
    if name == "vllm":
        from acards.generate.backends.vllm_backend import VLLMBackend

        return VLLMBackend
    raise _unknown(name)
