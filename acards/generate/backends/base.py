"""The backend interface, decoding settings, device choice and package versions."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Protocol

from acards.errors import AcardsError


@dataclass(frozen=True)
class Decoding:
    """The card's ``generation`` section, as a backend needs it."""

    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_p: float
    seed: int
    batch_size: int
    dtype: str

    @classmethod
    def from_card(cls, card) -> "Decoding":
        s = card.section("generation")
        return cls(int(s["max_new_tokens"]), bool(s["do_sample"]), float(s["temperature"]), float(s["top_p"]),
                   int(s["seed"]), int(s["batch_size"]), str(s["dtype"]))


class Backend(Protocol):
    """What :mod:`acards.generate.runner` needs of a backend.

    ``model_calls`` counts batched generate calls and ``generated`` the outputs produced, so that
    a caller can see (and a test can assert) that a cached run never touched a model.
    """

    name: str
    dtype: str
    model_calls: int
    generated: int

    @staticmethod
    def versions() -> dict[str, str]: ...  # packages whose versions are part of the cache key

    def device_name(self) -> str: ...

    def generate(self, spec, prompts: list[list[int]], decoding: Decoding, seeds: list[int] | None,
                 pad_id: int, eos_ids: list[int]) -> list[list[int]]: ...  # generated ids per prompt

    def close(self) -> None: ...


def package_versions(*names: str) -> dict[str, str]:
    """Installed versions (from package metadata: nothing is imported)."""
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def select_device(override: str | None = None) -> str:
    """``override``, else ``$ACARDS_DEVICE`` (read by acards.settings), else the best present: cuda, then mps, then cpu."""
    import torch

    from acards.settings import current

    choice = override or current().device
    if choice is None:
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    kind = choice.split(":")[0]
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    if kind not in available:
        raise AcardsError("usage.bad-device", f"unknown device {choice!r}", "use cuda, cuda:N, mps or cpu (or leave it out to choose automatically)")
    if not available[kind]:
        raise AcardsError("generate.no-device", f"device {choice!r} is not available here",
                          "leave --device out to use the best device present, or install a torch build for it")
    return choice
