"""The optional vLLM backend: token-id prompts, per-request seeds, LoRA adapters as LoRA requests.

Installed separately (``pip install vllm``, GPU only).  Prompts are passed as token ids
(``TokensPrompt``), so vLLM renders nothing itself: the chat-template and BOS policy is acards'
(:mod:`acards.generate.prompting`).  Each request gets ``SamplingParams(seed=...)`` from its cache
key, so samples do not depend on batching.  The model, the tokenizer and LoRA adapters are read from
private copies hashed as they were copied (:mod:`acards.evidence.snapshot`), kept until
:meth:`VLLMBackend.close`, never from the card's folders.  vLLM's kernels differ from transformers', so its
outputs are cached under their own backend name and never mixed with transformers' outputs.
"""

from __future__ import annotations

import json

from acards.errors import AcardsError, Location
from acards.evidence.snapshot import Holdings
from acards.generate.backends.base import BACKEND_PACKAGES, Decoding, package_versions

_RANKS = (8, 16, 32, 64, 128, 256, 512)


def _require_vllm():
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise AcardsError("generate.backend-unavailable", "the vllm backend needs the vllm package, which is not installed",
                          "pip install vllm (on a machine with a supported GPU), or use the default transformers backend") from None
    return vllm


class VLLMBackend:
    name = "vllm"

    def __init__(self, device: str | None = None, dtype: str = "float32"):
        self.vllm = _require_vllm()
        if device not in (None, "cuda"):
            raise AcardsError("usage.bad-device", f"the vllm backend runs on cuda, not {device!r}", "leave --device out with --backend vllm")
        self.device = "cuda"
        self.dtype = dtype
        self.model_calls = 0
        self.generated = 0
        self._llm = None
        self._key = None
        self._rank = 0
        self._lora_ids: dict[str, int] = {}
        self._snapshots = Holdings()  # the private copies vLLM reads, kept until close()

    @staticmethod
    def versions() -> dict[str, str]:
        return package_versions(*BACKEND_PACKAGES["vllm"])

    def device_name(self) -> str:
        import torch

        return torch.cuda.get_device_name(0)

    def _llm_for(self, spec):
        rank = 0
        if spec.adapter is not None:
            copy = self._snapshots.path(spec.adapter, spec.adapter_digest)
            try:
                rank = int(json.loads((copy / "adapter_config.json").read_text(encoding="utf-8"))["r"])
            except (OSError, ValueError, KeyError, TypeError):
                raise AcardsError("model.bad-adapter", f"{spec.adapter}: adapter_config.json has no rank r",
                                  "re-save the adapter with PEFT", Location(file=str(spec.adapter))) from None
        key = spec.full_digest or spec.base_digest
        if self._llm is None or self._key != key or rank > self._rank:
            self._unload()
            max_rank = next((r for r in _RANKS if r >= max(rank, 16)), _RANKS[-1])
            weights = self._snapshots.path(spec.weights_folder, spec.full_digest or spec.base_digest)
            # the tokenizer is the base folder's: with full weights, a copy of its files but the weights
            tokenizer = weights if spec.full is None else self._snapshots.path(spec.base, spec.base_digest, weights=False)
            try:
                self._llm = self.vllm.LLM(model=str(weights), tokenizer=str(tokenizer), dtype=self.dtype,
                                          trust_remote_code=False, enable_lora=True, max_lora_rank=max_rank, seed=0)
            except Exception as error:  # noqa: BLE001
                raise AcardsError("model.load-failed", f"vllm cannot load {spec.weights_folder}: {type(error).__name__}: {error}",
                                  "use the transformers backend for this model", Location(file=str(spec.weights_folder))) from None
            self._key, self._rank, self._lora_ids = key, max_rank, {}
        return self._llm

    def generate(self, spec, prompts: list[list[int]], decoding: Decoding, seeds: list[int] | None,
                 pad_id: int, eos_ids: list[int]) -> list[list[int]]:  # noqa: ARG002 — the backend interface; vLLM pads itself
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.lora.request import LoRARequest

        llm = self._llm_for(spec)
        lora = None
        if spec.adapter is not None:
            number = self._lora_ids.setdefault(spec.adapter_digest, len(self._lora_ids) + 1)
            lora = LoRARequest(f"acards-{number}", number, str(self._snapshots.path(spec.adapter, spec.adapter_digest)))
        params = []
        for position in range(len(prompts)):
            common = dict(max_tokens=decoding.max_new_tokens, stop_token_ids=list(eos_ids), detokenize=False,
                          skip_special_tokens=True, ignore_eos=False)
            if decoding.do_sample:
                params.append(SamplingParams(temperature=decoding.temperature, top_p=decoding.top_p, top_k=-1,
                                             seed=seeds[position], **common))
            else:
                params.append(SamplingParams(temperature=0.0, **common))
        outputs = llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], params,
                               lora_request=lora, use_tqdm=False)
        self.model_calls += 1
        self.generated += len(prompts)
        return [list(o.outputs[0].token_ids) for o in outputs]

    def close(self) -> None:
        self._unload()
        self._snapshots.close()

    def _unload(self) -> None:
        self._llm = None
        self._key = None
        import gc

        gc.collect()
