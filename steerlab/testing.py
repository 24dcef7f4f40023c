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


def tiny_tokenizer(style: str = "char"):
    """A tiny tokenizer, built offline (see `TOKENIZER_STYLES`); the default is character-level over printable
    ASCII plus ChatML markers (pad = eos, no BOS)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if style == "sentencepiece":
        return _sentencepiece_tokenizer()
    if style in ("gpt2", "tiktoken"):
        return _byte_level_tokenizer(style)
    if style != "char":
        raise SteerlabError(f"unknown tokenizer style {style!r}; valid: {', '.join(TOKENIZER_STYLES)}")

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


LLAMA2_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{% set sys = m['content'] %}"
    "{% elif m['role'] == 'user' %}[INST] {% if sys is defined %}<<SYS>>\n{{ sys }}\n<</SYS>>\n\n{% endif %}"
    "{{ m['content'] }} [/INST]{% else %} {{ m['content'] }} {{ eos_token }}{% endif %}{% endfor %}"
)
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
TOKENIZER_STYLES: tuple[str, ...] = ("char", "sentencepiece", "gpt2", "tiktoken")
"""Tokenizers `tiny_tokenizer` builds: character-level (ChatML template), SentencePiece BPE as Llama-2 ships it
(``▁`` for spaces, a space prepended, Llama-2 chat template), byte-level BPE as GPT-2 (no chat template) and
tiktoken-style byte-level BPE with Llama-3's split pattern and chat template."""
# Text the BPE tokenizers are trained on (offline, deterministic): enough for answers, letters and prompts.
_CORPUS = [
    "Is the sky blue? Yes. No. Yes, it is. No, it is not. Answer: A Answer: B Answer: C Answer: D",
    "Choices: (A) yes (B) no (C) maybe (D) never. Answer: (A) Answer: (B) The answer is (A).",
    "User: Pick one.\nAssistant: Yes\nUser: Really?\nAssistant: No",
    "[INST] Is it? [/INST] Yes [INST] Is it not? [/INST] No (A) (B) A B C D",
    "the quick brown fox jumps over the lazy dog, a shorter prompt, hello there friend",
] * 3
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


def _train_bpe(pre_tokenizer, specials: list[str], alphabet: list[str], vocab_size: int = 320):
    from tokenizers import Tokenizer, models, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=alphabet, show_progress=False
    )
    tok.train_from_iterator(_CORPUS, trainer)
    return tok


def _sentencepiece_tokenizer():
    """A Llama-2-style tokenizer: `transformers.LlamaTokenizer` over a BPE vocabulary trained here."""
    import json

    from tokenizers import pre_tokenizers
    from transformers import LlamaTokenizer

    chars = sorted(set(string.printable) - set(string.whitespace) | {"\n", "▁"})
    trained = _train_bpe(pre_tokenizers.Metaspace(prepend_scheme="first"), ["<unk>", "<s>", "</s>"], chars)
    model = json.loads(trained.to_str())["model"]
    tok = LlamaTokenizer(vocab=model["vocab"], merges=[tuple(m) for m in model["merges"]], legacy=False)
    tok.chat_template = LLAMA2_CHAT_TEMPLATE
    return tok


def _byte_level_tokenizer(style: str):
    from tokenizers import Regex, decoders, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=style == "gpt2")
    if style == "gpt2":
        specials, pre = ["<|endoftext|>"], byte_level
    else:
        specials = ["<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"]
        pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), "isolated"), byte_level])
    trained = _train_bpe(pre, specials, pre_tokenizers.ByteLevel.alphabet())
    trained.decoder = decoders.ByteLevel()
    if style == "gpt2":
        return PreTrainedTokenizerFast(tokenizer_object=trained, bos_token=specials[0], eos_token=specials[0])
    tok = PreTrainedTokenizerFast(tokenizer_object=trained, bos_token=specials[0], eos_token=specials[1],
                                  additional_special_tokens=specials[2:])  # fmt: skip
    tok.chat_template = LLAMA3_CHAT_TEMPLATE
    return tok


def tiny_config(arch: str, *, vocab_size: int, n_layers: int = 2, d_model: int = 32, sliding_window: int = 8,
                eos_token_id: int = 0, pad_token_id: int = 0, n_ctx: int = 256) -> Any:  # fmt: skip
    """The Hugging Face config of a tiny ``arch`` model (see `TINY_ARCHITECTURES`) with an ``n_ctx``-token context."""
    import transformers as tf

    ids = {"eos_token_id": eos_token_id, "pad_token_id": pad_token_id, "bos_token_id": None}
    llama_like = {
        "vocab_size": vocab_size, "hidden_size": d_model, "intermediate_size": 2 * d_model,
        "num_hidden_layers": n_layers, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": n_ctx, "tie_word_embeddings": True, **ids,
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
            vocab_size=vocab_size, n_embd=d_model, n_layer=n_layers, n_head=4, n_positions=n_ctx, **ids
        ),
        "gpt_neox": lambda: tf.GPTNeoXConfig(
            vocab_size=vocab_size, hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
            num_attention_heads=4, max_position_embeddings=n_ctx, tie_word_embeddings=False, **ids,
        ),
    }  # fmt: skip
    if arch not in makers:
        raise SteerlabError(f"no tiny config for architecture {arch!r}; valid: {', '.join(TINY_ARCHITECTURES)}")
    return makers[arch]()


def make_tiny_model(
    folder: str | Path, *, arch: str = "llama", n_layers: int = 2, d_model: int = 32, seed: int = 0,
    sliding_window: int = 8, tokenizer: str = "char", n_ctx: int = 256,
) -> Path:  # fmt: skip
    """Write a random tiny model of architecture ``arch`` with a ``tokenizer``-style tokenizer (see
    `TOKENIZER_STYLES`) and an ``n_ctx``-token context to ``folder``; returns the folder."""
    from transformers import AutoModelForCausalLM

    folder = Path(folder)
    tok = tiny_tokenizer(tokenizer)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    cfg = tiny_config(
        arch, vocab_size=len(tok), n_layers=n_layers, d_model=d_model, sliding_window=sliding_window,
        eos_token_id=tok.eos_token_id, pad_token_id=pad, n_ctx=n_ctx,
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


def tiny_backend(kind: str, folder: str | Path, device: str | torch.device = "cpu"):
    """Load the tiny model in ``folder`` (see `make_tiny_model`) through a backend, in fp32 on ``device``."""
    from steerlab.models import load_model

    return load_model(str(folder), backend=kind, device=device, dtype=torch.float32)
