"""Each condition's model, resolved from the card to folders and content digests (SPEC §5.3).

- ``base``: the cell's ``checkpoints.base`` folder alone (config.json, tokenizer files, safetensors).
- ``undefended`` / ``defended``: the base model with the cell's PEFT adapter folder; a folder of
  full weights (config.json + safetensors) is also accepted, and then is the condition's model.
- ``control:shrinkage``: the undefended adapter with each module's B scaled to the defended
  module's norm (:func:`acards.evidence.controls.write_control`), written once into a
  content-addressed folder ``cache_dir()/controls/<digest of (recipe, U digest, D digest)>-<keyid>``
  (one per user's cache key), whose content digest is sealed with a MAC under that key in
  ``cache_dir()/control-seals/<folder>.json`` when it is written, and checked before every use: a
  folder whose digest is not the sealed one (replaced weights, a missing or forged seal) is rebuilt.

Fine-tuned conditions exist for the training seeds whose checkpoints the cell pins
(``checkpoints.seed`` for the top-level pair, each entry of ``checkpoints.seeds``;
acards.evidence.seeds): a record of seed s is generated from seed s's own checkpoints, and its
control from seed s's pair.  The control of full-weight checkpoints is a full-weights folder, base +
each module's ΔU scaled to ΔD's norm (:func:`acards.evidence.controls.write_control`).
Everything here reads files and headers only; no model is loaded.  What an adapter, a checkpoint
and a pinned digest must be is acards.evidence's to say (the rules verification applies too); this
module adds only what loading needs: which folders make each condition's model, and that a model
folder has a config.json.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from acards.errors import AcardsError, Location, codes
from acards.evidence.adapters import ADAPTER_WEIGHTS, check_adapter, is_adapter
from acards.evidence.safetensors_io import refuse_pickles
from acards.evidence.seeds import FINE_TUNED, for_seed, seed_checkpoints
from acards.generate.cache import digest
from acards.vocabulary import BUILDABLE_CONDITIONS, CONTROL_SHRINKAGE

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "tokenizer.model", "spiece.model", "sentencepiece.bpe.model", "vocab.json", "vocab.txt", "merges.txt",
                   "chat_template.jinja", "chat_template.json")
CONTROL_RECIPE = "control:shrinkage/1"
FULL_CONTROL_RECIPE = "control:shrinkage-full/1"  # base + per-module scaled ΔU, for full-weight checkpoints


@dataclass(frozen=True)
class ModelSpec:
    """What one condition's model is made of: folders, and the digests that name them."""

    base: Path  # tokenizer (and, without ``full``, weights) folder
    base_digest: str
    adapter: Path | None = None
    adapter_digest: str | None = None
    full: Path | None = None  # a full-weights folder that replaces the base weights
    full_digest: str | None = None

    @property
    def weights(self) -> dict:
        """The weight digests the cache key names."""
        return {"base": self.base_digest, "adapter": self.adapter_digest, "full": self.full_digest}

    @property
    def weights_folder(self) -> Path:
        return self.full or self.base

    @cached_property  # asked once per request: computed once per spec
    def ident(self) -> str:
        return digest(self.weights)


def _model_error(code: str, message: str, hint: str, path: Path | str | None = None, location: Location | None = None) -> AcardsError:
    if location is None:
        location = Location(file=str(path)) if path is not None else Location()
    return AcardsError(code, message, hint, location)


def _safetensors_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors"))


def check_model_folder(folder: Path, what: str, location: Location | None = None) -> None:
    """A folder transformers can load with use_safetensors=True and nothing unpickled."""
    if not folder.is_dir():
        raise _model_error("model.not-a-folder", f"{what} ({folder}) is a file, not a model folder",
                           "point at the folder written by save_pretrained (config.json, tokenizer, *.safetensors)", folder, location)
    if not (folder / "config.json").is_file():
        raise _model_error("model.no-config", f"{what} ({folder}) has no config.json",
                           "point at the folder written by save_pretrained", folder, location)
    if not _safetensors_files(folder):
        refuse_pickles(folder, location)
        raise _model_error("model.no-weights", f"{what} ({folder}) holds no *.safetensors weights",
                           "copy the model's safetensors files into the folder", folder, location)


def tokenizer_digest(folder: Path, digests=None) -> str:
    """sha256 of the manifest (as for a folder pointer) of the tokenizer files in ``folder``."""
    import hashlib

    from acards.evidence.digests import (
        DigestCache,
        FileEntry,
        digest_file,
        manifest_bytes,
    )

    cache = DigestCache.or_default(digests)
    try:
        entries = []
        for name in TOKENIZER_FILES:
            path = folder / name
            if path.is_file():
                size, value = digest_file(path, cache, name)
                entries.append(FileEntry(name, size, value))
        extra = folder / "additional_chat_templates"
        if extra.is_dir():
            for path in sorted(extra.iterdir()):
                if path.is_file():
                    size, value = digest_file(path, cache, path.name)
                    entries.append(FileEntry(f"additional_chat_templates/{path.name}", size, value))
    finally:
        cache.close()
    return hashlib.sha256(manifest_bytes(entries)).hexdigest()


def eos_token_ids(folder: Path) -> list[int]:
    """End-of-sequence ids from the model's generation_config.json (a chat model's end-of-turn)."""
    path = folder / "generation_config.json"
    if not path.is_file():
        return []
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("eos_token_id")
    except (OSError, ValueError, AttributeError):
        return []
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, int) and not isinstance(v, bool)]


class ModelResolver:
    """Resolves (cell, condition, seed) to a :class:`ModelSpec`, checking folders and digests once."""

    def __init__(self, card, digests=None, cache_dir: Path | None = None):
        from acards.evidence.digests import DigestCache

        self.card = card
        self._digests, self._cache_dir = DigestCache.or_default(digests), cache_dir
        self._paths: dict[tuple[str, str, int | None], tuple[Path, str]] = {}
        self._specs: dict[tuple[str, str, int], ModelSpec] = {}
        self._checked: set[tuple[Path, Path]] = set()  # (adapter, base) pairs that passed the evidence rules
        self.rejected_controls = 0  # cached control adapters that failed their seal and were rebuilt

    def close(self) -> None:
        self._digests.close()

    def _cell(self, cell_id: str) -> tuple[int, dict]:
        for index, cell in enumerate(self.card.cells):
            if cell["id"] == cell_id:
                return index, cell
        raise _model_error("model.unknown-cell", f"records name cell {cell_id!r}, which the card does not declare",
                           "add the cell to the card, or fix the records' cell field", location=Location(file=str(self.card.path)))

    def _pointer(self, cell_id: str, name: str, condition: str, seed: int | None = None) -> tuple[Path, str, Location]:
        """The folder of checkpoint ``name`` of the cell (of training ``seed`` for undefended and
        defended), its digest checked once."""
        from acards.evidence.digests import check_digest
        from acards.evidence.paths import resolve_inside

        index, cell = self._cell(cell_id)
        if name in FINE_TUNED:
            entry = for_seed(cell, int(seed or 0))
            pointer, at = (entry.pointer(name), f"{entry.at}/{name}") if entry else (None, "")
        else:
            pointer, at = (cell.get("checkpoints") or {}).get(name), f"/{name}"
        where = self.card.source.locate(f"/cells/{index}/checkpoints{at}" if pointer else f"/cells/{index}")
        if not pointer:
            raise _model_error("model.missing-checkpoint",
                               f"cell {cell_id} has no checkpoints.{name}, which regenerating {condition} outputs needs",
                               f"add checkpoints.{name} (a folder of safetensors weights or a PEFT adapter) to the cell, or supply the outputs",
                               location=where)
        key = (cell_id, name, seed if name in FINE_TUNED else None)
        if key not in self._paths:
            try:
                path = resolve_inside(self.card.folder, pointer["path"], where)
            except AcardsError as error:
                if error.code == codes.EVIDENCE_MISSING:
                    raise _model_error("model.not-found", f"the {name} checkpoint of cell {cell_id} is missing: {error.problems[0].message}",
                                       "put the checkpoint where the card says, or fix checkpoints." + name + ".path", location=where) from None
                raise
            actual = check_digest(path, pointer["path"], pointer["sha256"], self._digests, where)
            self._paths[key] = (path, actual)
        path, value = self._paths[key]
        return path, value, where

    def _base(self, cell_id: str, condition: str) -> tuple[Path, str]:
        path, value, where = self._pointer(cell_id, "base", condition)
        check_model_folder(path, f"the base model of cell {cell_id}", where)
        return path, value

    def spec(self, cell_id: str, condition: str, seed: int) -> ModelSpec:
        key = (cell_id, condition, int(seed))
        if key not in self._specs:
            self._specs[key] = self._resolve(cell_id, condition, int(seed))
        return self._specs[key]

    def _resolve(self, cell_id: str, condition: str, seed: int) -> ModelSpec:
        index, cell = self._cell(cell_id)
        if condition not in BUILDABLE_CONDITIONS:
            raise _model_error("model.unknown-condition",
                               f"acards cannot build a model for condition {condition!r} (cell {cell_id})",
                               "acards regenerates base, undefended, defended and control:shrinkage outputs; supply the outputs of other controls",
                               location=self.card.source.locate(f"/cells/{index}"))
        base, base_digest = self._base(cell_id, condition)
        if condition == "base":
            return ModelSpec(base, base_digest)
        pinned = [entry.seed for entry in seed_checkpoints(cell)]
        if seed not in pinned:
            listed = ", ".join(map(str, pinned)) or "none"
            raise _model_error("model.no-checkpoint-for-seed",
                               f"a {condition} record of cell {cell_id} has seed {seed}, but the cell pins checkpoints of seed(s) {listed} only",
                               "supply the outputs of that seed, or pin its checkpoints under checkpoints.seeds",
                               location=self.card.source.locate(f"/cells/{index}/checkpoints"))
        if condition == CONTROL_SHRINKAGE:
            return self._control(cell_id, seed, base, base_digest)
        path, value, where = self._pointer(cell_id, condition, condition, seed)
        what = f"the {condition} checkpoint of cell {cell_id}"
        if not path.is_dir():
            raise _model_error("model.not-a-folder", f"{what} ({path}) is a file",
                               "point at a PEFT adapter folder or a folder of full weights", path, where)
        if is_adapter(path):
            self._check_adapter(path, base)
            return ModelSpec(base, base_digest, adapter=path, adapter_digest=value)
        check_model_folder(path, what, where)
        return ModelSpec(base, base_digest, full=path, full_digest=value)

    def _check_adapter(self, adapter: Path, base: Path) -> None:
        """The adapter rules verification applies (plain LoRA, safetensors, fits the base), once per folder."""
        if (adapter, base) not in self._checked:
            check_adapter(adapter, base)
            self._checked.add((adapter, base))

    def _control(self, cell_id: str, seed: int, base: Path, base_digest: str) -> ModelSpec:
        """Seed ``seed``'s control: an adapter when its undefended checkpoint is one, else full weights."""
        from acards.evidence.digests import digest_path
        from acards.settings import cache_dir

        parts = {}
        for name in ("undefended", "defended"):
            path, value, where = self._pointer(cell_id, name, CONTROL_SHRINKAGE, seed)
            if not path.is_dir():
                raise _model_error("model.not-a-folder", f"the {name} checkpoint of cell {cell_id} ({path}) is a file",
                                   "point at a PEFT adapter folder or a folder of full weights", path, where)
            if is_adapter(path):
                self._check_adapter(path, base)
            else:
                check_model_folder(path, f"the {name} checkpoint of cell {cell_id}", where)
            parts[name] = (path, value)
        full = not is_adapter(parts["undefended"][0])
        from acards.evidence.cachekey import cache_key

        key = cache_key()
        recipe = FULL_CONTROL_RECIPE if full else CONTROL_RECIPE
        name = digest({"recipe": recipe, "undefended": parts["undefended"][1], "defended": parts["defended"][1]}
                      | ({"base": base_digest} if full or not is_adapter(parts["defended"][0]) else {}))
        root = self._cache_dir or cache_dir()
        folder = root / "controls" / f"{name}-{key.id.hex()}"
        seal = root / "control-seals" / f"{folder.name}.json"
        value = None
        if _control_written(folder, full):
            value = digest_path(folder, self._digests, "control")
            if not _seal_holds(seal, key, folder.name, value):
                from acards.evidence.cachekey import rejected_warning

                self.rejected_controls += 1
                rejected_warning(f"the cached control:shrinkage adapter {folder} is not the one acards wrote (its content "
                                 "digest is not the one sealed under this user's cache key): it is rebuilt",
                                 "if you did not replace it, someone else may be writing this cache folder",
                                 Location(file=str(folder)))
                value = None
        if value is None:
            _write_control(parts["undefended"][0], parts["defended"][0], base, folder, cell_id, full, replace=folder.exists())
            value = digest_path(folder, self._digests, "control")
            _write_seal(seal, key, folder.name, value)
        if full:
            check_model_folder(folder, f"the control:shrinkage model of cell {cell_id}")
            return ModelSpec(base, base_digest, full=folder, full_digest=value)
        self._check_adapter(folder, base)
        return ModelSpec(base, base_digest, adapter=folder, adapter_digest=value)


SEAL_PURPOSE = "acards/control-adapter/1"


def _seal_holds(seal: Path, key, name: str, value: str) -> bool:
    """The seal names ``value`` as the folder's content digest, under a MAC of this user's key."""
    try:
        data = json.loads(seal.read_text(encoding="utf-8"))
        return (isinstance(data, dict) and data.get("digest") == value
                and key.verify(bytes.fromhex(str(data.get("mac", ""))), SEAL_PURPOSE, name, value))
    except (OSError, ValueError):
        return False


def _write_seal(seal: Path, key, name: str, value: str) -> None:
    seal.parent.mkdir(parents=True, exist_ok=True)
    staging = seal.parent / f".{seal.name}.{os.getpid()}"
    staging.write_text(json.dumps({"digest": value, "mac": key.mac(SEAL_PURPOSE, name, value).hex()}), encoding="utf-8")
    os.replace(staging, seal)


def _control_written(folder: Path, full: bool) -> bool:
    return (folder / "config.json").is_file() if full else (folder / ADAPTER_WEIGHTS).is_file()


def _write_control(undefended: Path, defended: Path, base: Path, folder: Path, cell_id: str, full: bool,
                   replace: bool = False) -> None:
    """Write the control (an adapter, or full weights when ``full``) beside ``folder`` and rename it
    into place (several processes may race); ``replace``: the folder there failed its check and is
    moved away first."""
    from acards.evidence.controls import write_control

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        try:
            scales = write_control(undefended, defended, base, staging)
        except AcardsError as error:
            problem = error.problems[0]
            raise _model_error("model.control-failed",
                               f"cannot build control:shrinkage for cell {cell_id}: {problem.message} ({problem.code})",
                               problem.hint, location=problem.location) from None
        (staging / "control_scales.json").write_text(json.dumps(scales, sort_keys=True, indent=1), encoding="utf-8")
        if replace and folder.exists():
            stale = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.stale."))
            os.rename(folder, stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(staging, folder)
        except OSError:
            if not _control_written(folder, full):
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
