"""Tiny random models for tests and examples: built from a config in under a second, no downloads.

A character-level tokenizer (with a ChatML-style chat template, pad = eos, no BOS) and a 2-layer
model with random weights, saved to a folder so both backends load it the way they load any local
model. `TINY_ARCHITECTURES` lists the architectures `make_tiny_model` can build: each is the real
Hugging Face class at a tiny size (d_model 32, 4 heads, 2 of them key/value heads where the
architecture has grouped-query attention), with sliding windows shrunk to ``sliding_window`` tokens
(default 8) so that short test prompts already cross them.

Example:
    >>> folder = make_tiny_model(tmp / "gemma2", arch="gemma2")   # doctest: +SKIP
    >>> lm = tiny_backend("tl", folder)                            # doctest: +SKIP
    >>> lm.n_layers, lm.d_model
    (2, 32)
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch

from steerlab.errors import SteerlabError

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

TINY_ARCHITECTURES: tuple[str, ...] = (
    "llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "phi3", "gpt2", "gpt_neox",
)  # fmt: skip
"""Architectures `make_tiny_model` builds (Hugging Face ``model_type`` names; ``gemma3`` is Gemma-3's text model)."""


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


def tiny_config(arch: str, *, vocab_size: int, n_layers: int = 2, d_model: int = 32, sliding_window: int = 8,
                eos_token_id: int = 0, pad_token_id: int = 0) -> Any:  # fmt: skip
    """The Hugging Face config of a tiny ``arch`` model (see `TINY_ARCHITECTURES`)."""
    import transformers as tf

    ids = {"eos_token_id": eos_token_id, "pad_token_id": pad_token_id, "bos_token_id": None}
    llama_like = {
        "vocab_size": vocab_size, "hidden_size": d_model, "intermediate_size": 2 * d_model,
        "num_hidden_layers": n_layers, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 256, "tie_word_embeddings": True, **ids,
    }  # fmt: skip
    head_dim = d_model // 4
    windowed = ["sliding_attention", "full_attention"] * n_layers
    makers = {
        "llama": lambda: tf.LlamaConfig(**llama_like),
        "mistral": lambda: tf.MistralConfig(**llama_like, sliding_window=sliding_window),
        "qwen2": lambda: tf.Qwen2Config(**llama_like),
        "qwen3": lambda: tf.Qwen3Config(**llama_like, head_dim=head_dim),
        "gemma2": lambda: tf.Gemma2Config(
            **llama_like, head_dim=head_dim, sliding_window=sliding_window, layer_types=windowed[:n_layers],
            query_pre_attn_scalar=head_dim,
        ),
        "gemma3": lambda: tf.Gemma3TextConfig(
            **llama_like, head_dim=head_dim, sliding_window=sliding_window, layer_types=windowed[:n_layers],
            query_pre_attn_scalar=head_dim,
        ),
        "phi3": lambda: tf.Phi3Config(**llama_like),
        "gpt2": lambda: tf.GPT2Config(
            vocab_size=vocab_size, n_embd=d_model, n_layer=n_layers, n_head=4, n_positions=256, **ids
        ),
        "gpt_neox": lambda: tf.GPTNeoXConfig(
            vocab_size=vocab_size, hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
            num_attention_heads=4, max_position_embeddings=256, tie_word_embeddings=False, **ids,
        ),
    }  # fmt: skip
    if arch not in makers:
        raise SteerlabError(f"no tiny config for architecture {arch!r}; valid: {', '.join(TINY_ARCHITECTURES)}")
    return makers[arch]()


def make_tiny_model(
    folder: str | Path, *, arch: str = "llama", n_layers: int = 2, d_model: int = 32, seed: int = 0,
    sliding_window: int = 8,
) -> Path:  # fmt: skip
    """Write a random tiny model of architecture ``arch`` (and its tokenizer) to ``folder``; returns the folder."""
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    tok = tiny_tokenizer()
    cfg = tiny_config(
        arch, vocab_size=len(tok), n_layers=n_layers, d_model=d_model, sliding_window=sliding_window,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager")
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
