"""The transformers backend (default): transformers + PEFT, batched, left-padded.

One base model is held at a time; a cell's adapters are loaded into it by name (PEFT
``load_adapter``/``set_adapter``) and the ``base`` condition runs with adapters disabled, so
switching conditions never reloads the base weights.  Weights and adapters are loaded from private
copies whose bytes were hashed as they were copied (:mod:`acards.evidence.snapshot`), kept until
:meth:`TransformersBackend.close`, never from the card's folders.  The model's own generation_config.json is
replaced by acards' settings (only the card's decoding settings apply: no hidden top_k, repetition
penalty or sampling defaults from the checkpoint).

Sampling is per request and independent of batching: transformers decodes greedily over scores
that the card's temperature and top-p warpers, then Gumbel noise drawn from the request's own
``torch.Generator``, have been applied to.  The arg-max of logits plus Gumbel noise is an exact
sample of the softmax (the Gumbel-max trick), so each request's tokens depend only on its seed,
never on which other requests share its batch.
"""

from __future__ import annotations

import gc
import warnings

import torch

from acards.errors import AcardsError, Location
from acards.evidence.snapshot import Holdings
from acards.generate.backends.base import BACKEND_PACKAGES, Decoding, cpu_threads, package_versions, select_device
from acards.generate.prompting import _quiet_transformers

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class _GumbelPerRow:
    """Adds Gumbel noise from one generator per batch row (rows never move during greedy search).

    The generators live on the CPU and the noise is drawn there, then moved: a CUDA generator
    would give other numbers from the same seed, and the same card would sample differently on a
    GPU than on a CPU."""

    def __init__(self, generators: list[torch.Generator]):
        self.generators = generators

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:  # noqa: ARG002 — the LogitsProcessor signature
        noise = torch.empty(scores.shape, dtype=torch.float32)
        for row, generator in enumerate(self.generators):
            noise[row].exponential_(generator=generator)
        noise = noise.to(device=scores.device, dtype=scores.dtype)
        # argmax(scores - log E) with E ~ Exp(1) samples softmax(scores); -inf (masked) stays -inf.
        return scores - noise.log()


class TransformersBackend:
    name = "transformers"

    def __init__(self, device: str | None = None, dtype: str = "float32"):
        self.device = select_device(device)
        self.dtype = dtype
        self.threads_chosen_by = None
        if self.device == "cpu":
            from acards.settings import current

            threads, self.threads_chosen_by = cpu_threads(current().cpu_threads)
            torch.set_num_threads(threads)  # process-wide: torch's default is every core of the machine
        self.model_calls = 0
        self.generated = 0
        self._weights_key: str | None = None
        self._model = None
        self._adapters: dict[str, str] = {}  # adapter digest -> adapter name in the PeftModel
        self._snapshots = Holdings()  # the private copies models are loaded from, kept until close()

    @staticmethod
    def versions() -> dict[str, str]:
        return package_versions(*BACKEND_PACKAGES["transformers"])

    def device_name(self) -> str:
        if self.device.startswith("cuda"):
            return torch.cuda.get_device_name(torch.device(self.device))
        if self.device == "mps":
            return "Apple MPS"
        import platform

        return (f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
                + (f": {self.threads_chosen_by})" if self.threads_chosen_by else ")"))

    # --- models ---------------------------------------------------------------------------------

    def _load_base(self, spec) -> None:
        from transformers import AutoModelForCausalLM, GenerationConfig

        _quiet_transformers()
        folder = spec.weights_folder
        self._unload()
        copy = self._snapshots.path(folder, spec.full_digest or spec.base_digest)  # the bytes hashed, never the folder
        try:
            model = AutoModelForCausalLM.from_pretrained(str(copy), dtype=DTYPES[self.dtype], use_safetensors=True,
                                                         local_files_only=True, trust_remote_code=False)
        except Exception as error:  # noqa: BLE001
            raise AcardsError("model.load-failed", f"transformers cannot load the model in {folder}: {type(error).__name__}: {error}",
                              "the folder must hold a model transformers knows without remote code, saved as safetensors",
                              Location(file=str(folder))) from None
        model.generation_config = GenerationConfig()
        self._model = model.to(self.device).eval()
        self._weights_key = spec.full_digest or spec.base_digest
        self._adapters = {}

    def _model_for(self, spec):
        if self._model is None or self._weights_key != (spec.full_digest or spec.base_digest):
            self._load_base(spec)
        if spec.adapter is None:
            return self._model
        from peft import PeftModel

        name = self._adapters.get(spec.adapter_digest)
        if name is None:
            name = f"a{len(self._adapters)}"
            copy = self._snapshots.path(spec.adapter, spec.adapter_digest)
            try:
                with warnings.catch_warnings():  # PEFT calls a transformers API deprecated for v6
                    warnings.simplefilter("ignore", FutureWarning)
                    if isinstance(self._model, PeftModel):
                        self._model.load_adapter(str(copy), adapter_name=name, is_trainable=False)
                    else:
                        self._model = PeftModel.from_pretrained(self._model, str(copy), adapter_name=name, is_trainable=False)
            except Exception as error:  # noqa: BLE001
                raise AcardsError("model.bad-adapter", f"PEFT cannot load the adapter in {spec.adapter}: {type(error).__name__}: {error}",
                                  "the adapter must be a PEFT adapter (safetensors) trained on this base model",
                                  Location(file=str(spec.adapter))) from None
            self._model.to(self.device).eval()
            self._adapters[spec.adapter_digest] = name
        self._model.set_adapter(name)
        return self._model

    def close(self) -> None:
        self._unload()
        self._snapshots.close()

    def _unload(self) -> None:
        self._model = None
        self._weights_key = None
        self._adapters = {}
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # --- generation ---------------------------------------------------------------------------

    def generate(self, spec, prompts: list[list[int]], decoding: Decoding, seeds: list[int] | None,
                 pad_id: int, eos_ids: list[int]) -> list[list[int]]:
        from contextlib import nullcontext

        from transformers import GenerationConfig, LogitsProcessorList
        from transformers.generation.logits_process import (
            TemperatureLogitsWarper,
            TopPLogitsWarper,
        )

        model = self._model_for(spec)
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, ids in enumerate(prompts):
            input_ids[row, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            attention[row, width - len(ids):] = 1
        config = GenerationConfig(max_new_tokens=decoding.max_new_tokens, do_sample=False, num_beams=1,
                                  pad_token_id=pad_id, eos_token_id=list(eos_ids) or None)
        processors = LogitsProcessorList()
        if decoding.do_sample:
            if decoding.temperature != 1.0:
                processors.append(TemperatureLogitsWarper(decoding.temperature))
            if decoding.top_p < 1.0:
                processors.append(TopPLogitsWarper(decoding.top_p))
            generators = []
            for seed in seeds:
                generator = torch.Generator()  # on the CPU: see _GumbelPerRow
                generator.manual_seed(seed)
                generators.append(generator)
            processors.append(_GumbelPerRow(generators))
        adapters_off = model.disable_adapter() if spec.adapter is None and hasattr(model, "disable_adapter") else nullcontext()
        with torch.inference_mode(), adapters_off:
            out = model.generate(input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device),
                                 generation_config=config, logits_processor=processors)
        self.model_calls += 1
        self.generated += len(prompts)
        return [row[width:].tolist() for row in out.cpu()]
