"""Helpers the worked examples share: a byte-level tiny Llama, its chat format, a plain training
loop, and the few file operations that make PEFT's output reproducible.

Used by examples/installed-gap-audit/build.py.  (examples/tiny-regenerated/build.py predates this
module and keeps its own copies, so that its shipped files stay byte-identical.)
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file

CHAT_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'system' %}S: {{ m['content'] }}\n"
                 "{% elif m['role'] == 'user' %}U: {{ m['content'] }}\n{% endif %}{% endfor %}"
                 "{% if add_generation_prompt %}A: {% endif %}")
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def render(prompt: str) -> str:
    return f"U: {prompt}\nA: "


def make_tokenizer():
    from transformers import ByT5Tokenizer

    tokenizer = ByT5Tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_llama(tokenizer, seed: int):
    """A fresh byte-level Llama: hidden 64, 2 layers, 4 heads, tied embeddings (~107k parameters)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                         tie_word_embeddings=True, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id, rope_theta=10000.0)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


class Encoder:
    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.eos = tokenizer.eos_token_id

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def batch(self, examples: list[tuple[str, str]]):
        """Right-padded (input_ids, attention_mask, labels); loss on the answer and EOS only."""
        rows = []
        for prompt, answer in examples:
            p, a = self.ids(render(prompt)), self.ids(answer) + [self.eos]
            rows.append((p + a, [-100] * len(p) + a))
        width = max(len(ids) for ids, _ in rows)
        input_ids = torch.zeros(len(rows), width, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        labels = torch.full_like(input_ids, -100)
        for i, (ids, lab) in enumerate(rows):
            input_ids[i, :len(ids)] = torch.tensor(ids)
            attention[i, :len(ids)] = 1
            labels[i, :len(ids)] = torch.tensor(lab)
        return input_ids, attention, labels

    def left_padded(self, prompts: list[str]):
        ids = [self.ids(render(p)) for p in prompts]
        width = max(map(len, ids))
        input_ids = torch.zeros(len(ids), width, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for i, row in enumerate(ids):
            input_ids[i, width - len(row):] = torch.tensor(row)
            attention[i, width - len(row):] = 1
        return input_ids, attention


def train_loop(model, batches, lr: float, name: str, extra_loss=None) -> float:
    """AdamW, 20-step warm-up, linear decay; ``extra_loss(model, input_ids, attention, outputs)`` (the
    forward's outputs, with hidden states) is added to the language-model loss when given (a
    regulariser).  Returns seconds."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    total = len(batches)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 20) * max(0.05, 1 - s / total))
    model.train()
    start = time.time()
    for step, (input_ids, attention, labels) in enumerate(batches):
        if extra_loss is None:
            loss, extra = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss, None
        else:
            outputs = model(input_ids=input_ids, attention_mask=attention, labels=labels, output_hidden_states=True)
            loss, extra = outputs.loss, extra_loss(model, input_ids, attention, outputs)
        total_loss = loss if extra is None else loss + extra
        optimizer.zero_grad()
        total_loss.backward()
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == total - 1:
            note = "" if extra is None else f" + reg {extra.item():.4f}"
            print(f"  [{name}] step {step:4d}/{total}  loss {loss.item():.4f}{note}  {time.time() - start:5.1f}s", flush=True)
    model.eval()
    return time.time() - start


def lora_modules(model) -> dict:
    return {name.removeprefix("base_model.model."): module for name, module in model.named_modules()
            if hasattr(module, "lora_A") and isinstance(module.lora_A, torch.nn.ModuleDict) and "default" in module.lora_A}


@torch.no_grad()
def first_token_probability(model, encoder: Encoder, prompts: list[str], first: str) -> np.ndarray:
    """P(first answer token = ``first``'s first byte), per prompt."""
    token = encoder.ids(first)[0]
    input_ids, attention = encoder.left_padded(prompts)
    logits = model(input_ids=input_ids, attention_mask=attention).logits[:, -1]
    return torch.softmax(logits.double(), -1)[:, token].numpy()


@torch.no_grad()
def greedy_answers(model, encoder: Encoder, prompts: list[str], max_new_tokens: int) -> list[str]:
    input_ids, attention = encoder.left_padded(prompts)
    out = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=encoder.tokenizer.pad_token_id, eos_token_id=encoder.eos)
    return encoder.tokenizer.batch_decode(out[:, input_ids.shape[1]:], skip_special_tokens=True)


def read_adapter_tensors(folder: Path) -> dict[str, np.ndarray]:
    with safe_open(str(folder / "adapter_model.safetensors"), framework="numpy") as handle:
        return {key: handle.get_tensor(key) for key in handle.keys()}


def tidy_adapter_folder(folder: Path) -> None:
    """Make PEFT's output reproducible and machine-independent: no absolute base path, a sorted
    target_modules list (PEFT writes a set), sorted keys; drop the generated model-card README."""
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = None
    config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (folder / "README.md").unlink(missing_ok=True)


def write_adapter(source: Path, target: Path, tensors: dict[str, np.ndarray]) -> None:
    """An adapter folder with ``source``'s config and these tensors."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    shutil.copyfile(source / "adapter_config.json", target / "adapter_config.json")
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()},
              str(target / "adapter_model.safetensors"), metadata={"format": "pt"})


def module_of(key: str) -> str:
    """``base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight`` -> ``model.layers.0.self_attn.q_proj``."""
    return key.removeprefix("base_model.model.").rsplit(".lora_", 1)[0]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, separators=(", ", ": ")) + "\n")
