"""Prompts to token ids, once, the same way for every backend; generated ids back to text.

Rendering policy (recorded in provenance):

- With ``generation.chat_template: true`` and a tokenizer that has a chat template, the optional
  system message and the prompt (as the user turn) are rendered with ``add_generation_prompt=True``
  to text, and the text is tokenized with ``add_special_tokens=False`` — the template writes the
  special tokens it wants.  Otherwise the plain prompt text is tokenized the same way.
- BOS: if the tokenizer adds a BOS token by default and the ids do not already start with it, it
  is prepended — so there is exactly one BOS, whether or not the template wrote one.  No EOS is
  ever appended to a prompt.
- Padding is on the left with the tokenizer's pad token (else its EOS, else id 0), always with an
  attention mask.
- Outputs are the generated ids up to (not including) the first end-of-sequence id, decoded with
  ``skip_special_tokens=True``.  End-of-sequence ids are the tokenizer's EOS and every
  ``eos_token_id`` of the model's generation_config.json (a chat model's end-of-turn token).

The tokenizer and the generation config are read from a private copy of the base (and full-weights)
folder's files, whose digest (the whole folder's, weight files hashed in place) must be the pinned
one (:func:`pinned_encoder`, :mod:`acards.evidence.snapshot`), never from the card's folder.
"""

from __future__ import annotations

from pathlib import Path

from acards.errors import AcardsError, Location

# The rules above, named in the output cache's key (its outputs are keyed by prompt text, so what
# turns that text into ids, and generated ids into text, must be named): change the name whenever
# a rule changes.  The packages that apply them are named by version.
RULES = "acards/prompt-rendering/1: chat template with add_generation_prompt, add_special_tokens=False, one BOS, " \
        "no EOS; outputs cut at the first stop id, decoded with skip_special_tokens"
PACKAGES = ("transformers", "tokenizers", "jinja2", "sentencepiece", "protobuf")


def rendering_key(use_chat_template: bool) -> dict:
    """What the output cache's key says of rendering and decoding text (imports no tokenizer); the
    tokenizer files themselves, chat template included, are named by their digest beside it."""
    from acards.generate.backends.base import package_versions

    return {"rules": RULES, "chat_template": bool(use_chat_template), "packages": package_versions(*PACKAGES)}


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def load_tokenizer(folder: Path, shown: Path | None = None):
    """The tokenizer saved in ``folder`` (a private copy: see :func:`pinned_encoder`); ``shown``:
    the folder to name in errors (default ``folder``)."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers import AutoTokenizer

    _quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as error:  # noqa: BLE001 — transformers raises many kinds; all mean the same here
        shown = shown or folder
        raise AcardsError("model.bad-tokenizer", f"cannot load the tokenizer in {shown}: {type(error).__name__}: {error}",
                          "the base model folder must hold the tokenizer files save_pretrained writes (no remote code)",
                          Location(file=str(shown))) from None


def pinned_encoder(spec, use_chat_template: bool, digests=None) -> tuple["PromptEncoder", str]:
    """The prompt encoder of a :class:`~acards.generate.models.ModelSpec` and its tokenizer's digest.

    The tokenizer, the generation configs' end-of-sequence ids and the tokenizer digest are read
    from private copies of the base folder (and of the full-weights folder, whose generation config
    comes first) without their weight files; each copy's folder digest must be the pinned one, the
    weight files hashed in place (``digests``: the caller's DigestCache for those)."""
    from contextlib import ExitStack

    from acards.evidence.digests import DigestCache
    from acards.evidence.snapshot import pinned
    from acards.generate.models import eos_token_ids, tokenizer_digest

    with ExitStack() as copies, DigestCache.or_default(digests) as cache:
        base = copies.enter_context(pinned(spec.base, spec.base_digest, label=str(spec.base), weights=False, digests=cache))
        full = copies.enter_context(pinned(spec.full, spec.full_digest, label=str(spec.full), weights=False, digests=cache)) \
            if spec.full is not None else base
        extra_eos = eos_token_ids(full.path) or eos_token_ids(base.path)
        encoder = PromptEncoder(base.path, use_chat_template, extra_eos, shown=spec.base)
        return encoder, tokenizer_digest(base.path, DigestCache(None))  # a private copy: nothing to cache


class PromptEncoder:
    """Encodes prompts for one tokenizer and decodes generated ids."""

    def __init__(self, folder: Path, use_chat_template: bool, extra_eos: list[int] | None = None, shown: Path | None = None):
        self.folder = shown or folder  # named in errors
        self.tokenizer = tokenizer = load_tokenizer(folder, shown)
        self.chat = bool(use_chat_template and getattr(tokenizer, "chat_template", None))
        bos = tokenizer.bos_token_id
        probe = tokenizer("a", add_special_tokens=True)["input_ids"]
        self.bos_id = bos if bos is not None and probe[:1] == [bos] else None
        eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
        self.eos_ids = sorted(set(eos) | set(extra_eos or []))
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else (self.eos_ids[0] if self.eos_ids else 0)

    def policy(self) -> dict:
        return {"chat_template": self.chat, "add_special_tokens": False,
                "bos": "prepended when the tokenizer adds one and the text lacks it" if self.bos_id is not None else "none",
                "padding": "left", "pad_token_id": self.pad_id, "eos_token_ids": self.eos_ids}

    def render(self, prompt: str, system: str | None) -> str:
        if not self.chat:
            return prompt
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
        try:
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as error:  # noqa: BLE001 — jinja errors (e.g. "system role not supported")
            raise AcardsError("generate.chat-template",
                              f"the chat template of {self.folder} cannot render this prompt: {type(error).__name__}: {error}",
                              "remove the prompt's system message if the template has no system role, or set "
                              "generation.chat_template: false", Location(file=str(self.folder))) from None
        return text

    def encode(self, prompt: str, system: str | None = None) -> list[int]:
        ids = list(self.tokenizer(self.render(prompt, system), add_special_tokens=False)["input_ids"])
        if self.bos_id is not None and ids[:1] != [self.bos_id]:
            ids.insert(0, self.bos_id)
        return ids

    def decode(self, ids: list[int]) -> str:
        stop = set(self.eos_ids)
        for position, token in enumerate(ids):
            if token in stop:
                ids = ids[:position]
                break
        return self.tokenizer.decode(ids, skip_special_tokens=True)
