"""Real tiny models and PEFT adapters for tests: built in seconds, nothing downloaded."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import peft
import torch
import transformers
from safetensors.numpy import load_file, save_file

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "up_proj", "down_proj"]
SCALING = 8 / 4  # lora_alpha / r of the undefended adapter
PREFIX = "base_model.model."


def tiny_llama():
    tokenizer = transformers.ByT5Tokenizer()  # byte-level: builds without any download
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(config)


def randomise_lora(peft_model, seed: int) -> None:
    """B is zero at init; give every LoRA factor seeded random values instead."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)


def make_adapter(folder: Path, seed: int = 1, **lora_options) -> Path:
    options = {"r": 4, "lora_alpha": 8, "target_modules": TARGETS, **lora_options}
    model = peft.get_peft_model(tiny_llama(), peft.LoraConfig(**options))
    randomise_lora(model, seed)
    model.save_pretrained(folder)
    return folder


def module_of(key: str) -> tuple[str, str]:
    stem = key[len(PREFIX) :].removesuffix(".weight")
    module, _, factor = stem.rpartition(".lora_")
    return module, factor


def edit_adapter(source: Path, target: Path, edit) -> Path:
    """Copy an adapter, replacing each factor by ``edit(module, "A"|"B", array)`` (None drops it)."""
    target.mkdir(parents=True)
    shutil.copy(source / "adapter_config.json", target / "adapter_config.json")
    tensors = {}
    for key, value in load_file(source / "adapter_model.safetensors").items():
        module, factor = module_of(key)
        new = edit(module, factor, value.astype(np.float64))
        if new is not None:
            tensors[key] = np.asarray(new, dtype=np.float32)
    save_file(tensors, target / "adapter_model.safetensors", metadata={"format": "pt"})
    return target


def write_reference(path: Path, kind: str, matrices: dict[str, np.ndarray]) -> Path:
    save_file({f"{m}.{kind}": np.asarray(x, dtype=np.float32) for m, x in matrices.items()}, path)
    return path


def orthonormal(rng, rows: int, cols: int) -> np.ndarray:
    return np.linalg.qr(rng.standard_normal((rows, cols)))[0]


