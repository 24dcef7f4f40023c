"""Tiny random models for tests and examples: built from a config in under a second, no downloads.

A character-level tokenizer (with a ChatML-style chat template, pad = eos, no BOS) and a 2-layer
Llama with random weights, saved to a folder so both backends load it the way they load any
local model.

Example:
    >>> lm = tiny_backend("tl", folder)   # doctest: +SKIP
    >>> lm.n_layers, lm.d_model
    (2, 32)
"""

from __future__ import annotations

import string
from pathlib import Path

import torch

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer():
    """A character-level fast tokenizer over printable ASCII plus ChatML markers."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|im_end|>", "<|im_start|>", "<unk>"]
    chars = sorted(set(string.printable))
    vocab = {tok: i for i, tok in enumerate(specials + chars)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|im_end|>", unk_token="<unk>",
        additional_special_tokens=["<|im_start|>"],
    )  # fmt: skip
    fast.chat_template = CHAT_TEMPLATE
    return fast


def make_tiny_model(folder: str | Path, *, n_layers: int = 2, d_model: int = 32, seed: int = 0) -> Path:
    """Write a random tiny Llama (and its tokenizer) to ``folder``; returns the folder."""
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    tok = tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    with torch.no_grad():  # larger weights than the default init, so edits visibly change outputs
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def tiny_backend(kind: str, folder: str | Path):
    """Load the tiny model in ``folder`` (see `make_tiny_model`) through a backend."""
    from steerlab.models import load_model

    return load_model(str(folder), backend=kind, device="cpu", dtype=torch.float32)
