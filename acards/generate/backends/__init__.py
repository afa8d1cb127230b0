"""Generation backends.  A backend turns batches of prompt token ids into generated token ids for
one :class:`~acards.generate.models.ModelSpec`; everything else (tokenizing, caching, ordering,
decoding ids to text) is shared and lives in :mod:`acards.generate.runner`.

- ``transformers`` (default, :mod:`.hf`): transformers + PEFT, on cuda, mps or cpu.
- ``vllm`` (optional, :mod:`.vllm_backend`): token-id prompts, per-request seeds, LoRA requests.
"""

from __future__ import annotations

from acards.errors import AcardsError
from acards.generate.backends.base import (
    Backend,
    Decoding,
    package_versions,
    select_device,
)

BACKENDS = ("transformers", "vllm")

__all__ = ["BACKENDS", "Backend", "Decoding", "backend_class", "package_versions", "select_device"]


def backend_class(name: str) -> type:
    """The backend class for a name; importing it does not import torch or vllm yet."""
    if name == "transformers":
        from acards.generate.backends.hf import TransformersBackend

        return TransformersBackend
    if name == "vllm":
        from acards.generate.backends.vllm_backend import VLLMBackend

        return VLLMBackend
    raise AcardsError("usage.bad-backend", f"unknown generation backend {name!r}", "use one of: " + ", ".join(BACKENDS))
