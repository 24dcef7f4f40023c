"""Metrics for (steered) models: behaviour probability, MCQ accuracy, logit difference, perplexity,
KL to the unsteered model, and generations for open-ended evaluation.

Every metric takes ``edits`` (a list of `Edit`, default none), so the same call measures the base
model and any steered one, and returns tidy per-example results (a DataFrame with ``example_id``).
Inputs are processed in batches of ``batch_size`` (left padded: the last prompt token is at ``-1``).

Answer tokens are read where the answer is decided: for answers ``"(A)"`` / ``"(B)"`` the prompt
ends with the shared ``"("`` and the letters are compared; for ``"Yes"`` / ``"No"`` the first answer
tokens are compared (see `steerlab.prompts.choice_setup`).

Example:
    >>> df = behaviour_probability(lm, pairs, edits=steer(vec, alpha=4.0))   # doctest: +SKIP
    >>> df.p_behaviour.mean()                                                # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from steerlab import memory
from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError, check_nonempty
from steerlab.prompts import choice_setup, mcq_setup
from steerlab.sites import Batch, Edit

Edits = Sequence[Edit] | Edit | None


# ------------------------------------------------------------------------------------------ helpers


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise SteerlabError(f"batch_size must be a positive int, got {batch_size!r}")


def _example_id(record: Any, index: int) -> Any:
    meta = getattr(record, "meta", None) or {}
    value = meta.get("id") if isinstance(meta, dict) else None
    return index if value is None else value


def _last_logits(
    backend: Backend,
    prompts: Sequence[str],
    token_ids: Sequence[Sequence[int]],
    *,
    edits: Edits,
    batch_size: int,
    progress: bool,
    desc: str,
) -> tuple[list[Tensor], list[Tensor]]:
    """For each prompt, the logits of its ``token_ids`` at the last position and their probabilities
    under the full next-token distribution (both float32 on CPU)."""
    _check_batch_size(batch_size)
    logits_out, probs_out = [], []
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, disable=not progress):
        chunk = list(prompts[start : start + batch_size])
        last = backend.logits(chunk, edits=edits)[:, -1].float()
        lse = torch.logsumexp(last, dim=-1)
        for row, ids in enumerate(token_ids[start : start + len(chunk)]):
            sel = last[row, torch.as_tensor(list(ids), device=last.device)]
            logits_out.append(sel.cpu())
            probs_out.append((sel - lse[row]).exp().cpu())
    return logits_out, probs_out


# ------------------------------------------------------------------------------------------ metrics


def _as_token(backend: Backend, token: int | str) -> int:
    if isinstance(token, str):
        ids = backend.tokenizer(token, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise SteerlabError(
                f"{token!r} is {len(ids)} tokens, not one; pass a token id, or use choice_setup to put the "
                "answers' shared prefix into the prompt"
            )
        return ids[0]
    if isinstance(token, bool) or not isinstance(token, int):
        raise SteerlabError(f"a token must be an int id or a one-token str, got {token!r}")
    return token


def _per_example(backend: Backend, tokens: Any, n: int, name: str) -> list[int]:
    if isinstance(tokens, int | str):
        return [_as_token(backend, tokens)] * n
    if isinstance(tokens, Tensor):
        tokens = tokens.tolist()
    tokens = list(tokens)
    if len(tokens) != n:
        raise SteerlabError(f"{name} has {len(tokens)} entries for {n} prompts; give one per prompt or a single token")
    return [_as_token(backend, t) for t in tokens]


def logit_difference(
    backend: Backend,
    prompts: Sequence[str],
    pos_tokens: int | str | Sequence[int | str],
    neg_tokens: int | str | Sequence[int | str],
    *,
    edits: Edits = None,
    batch_size: int = 16,
    progress: bool = False,
) -> Float[Tensor, " n"]:
    """``logit[pos] - logit[neg]`` at the last position of each (already formatted) prompt.

    Tokens are token ids or one-token strings, one per prompt or a single one for all.

    Example:
        >>> logit_difference(lm, [lm.chat("Is it?")], "Yes", "No")   # doctest: +SKIP
        tensor([1.73])
    """
    prompts = check_nonempty(prompts, "prompts", "pass at least one formatted prompt")
    pos = _per_example(backend, pos_tokens, len(prompts), "pos_tokens")
    neg = _per_example(backend, neg_tokens, len(prompts), "neg_tokens")
    logits, _ = _last_logits(
        backend,
        prompts,
        list(zip(pos, neg, strict=True)),
        edits=edits,
        batch_size=batch_size,
        progress=progress,
        desc="logit diff",
    )
    return torch.stack([lg[0] - lg[1] for lg in logits])


def behaviour_probability(
    backend: Backend,
    pairs: Sequence,
    *,
    edits: Edits = None,
    system: str | None = None,
    batch_size: int = 16,
    progress: bool = False,
) -> pd.DataFrame:
    """Probability of the behaviour-matching answer, normalised over the two answers (CAA, Rimsky et al. 2024).

    ``p_behaviour = softmax([logit_pos, logit_neg])[0] = sigmoid(logit_diff)``, read at the last prompt
    position after `choice_setup` (so A/B pairs compare ``"A"`` vs ``"B"`` after ``"("`` and Yes/No
    pairs compare ``"Yes"`` vs ``"No"``). Works on anything with ``prompt``, ``positive``,
    ``negative`` (and optionally ``meta``) attributes, such as `steerlab.data.ContrastPair`.

    Returns:
        DataFrame with columns ``example_id`` (``meta["id"]`` or the index), ``p_behaviour``, ``logit_diff``.

    Example:
        >>> behaviour_probability(lm, pairs[:50], edits=steer(vec, 4.0)).p_behaviour.mean()   # doctest: +SKIP
    """
    pairs = check_nonempty(pairs, "pairs", "pass at least one contrast pair (prompt, positive, negative)")
    prompts, pos, neg = [], [], []
    for pair in pairs:
        prompt, (p, n) = choice_setup(backend, pair.prompt, [pair.positive, pair.negative], system=system)
        prompts.append(prompt)
        pos.append(p)
        neg.append(n)
    diff = logit_difference(backend, prompts, pos, neg, edits=edits, batch_size=batch_size, progress=progress)
    return pd.DataFrame(
        {
            "example_id": [_example_id(p, i) for i, p in enumerate(pairs)],
            "p_behaviour": torch.sigmoid(diff).tolist(),
            "logit_diff": diff.tolist(),
        }
    )


def mcq_accuracy(
    backend: Backend,
    items: Sequence,
    *,
    edits: Edits = None,
    chat: bool = True,
    system: str | None = None,
    letter_prefix: str = " ",
    batch_size: int = 16,
    progress: bool = False,
) -> pd.DataFrame:
    """Multiple-choice accuracy: the prediction is the option letter with the highest logit.

    Each item is rendered with `steerlab.prompts.mcq_prompt`. With ``chat=True`` the question, options and
    instruction form the user turn and the ``"Answer:"`` line opens the assistant turn; with
    ``chat=False`` the prompt is the raw text. The letters are scored as they follow ``"Answer:"``:
    ``letter_prefix + letter`` is tokenized (any shared leading tokens, e.g. a lone space for a
    character-level tokenizer, join the prompt) and the next token of each is compared.

    The default ``letter_prefix=" "`` is what BPE models write after ``"Answer:"``: on
    SmolLM2-135M-Instruct the tokens ``" A"``.. ``" D"`` hold 0.84 of the next-token probability
    there, and the bare ``"A"``.. ``"D"`` under 0.001 (use ``letter_prefix=""`` when the letter
    follows a newline).

    Works on anything with ``question``, ``choices``, ``answer`` (0-based) attributes, such as
    `steerlab.data.MCQItem`.

    Returns:
        DataFrame with columns ``example_id``, ``pred`` and ``answer`` (0-based option indices),
        ``correct`` (bool), ``p_correct`` (probability of the correct letter, normalised over the
        option letters) and ``letter_mass`` (total next-token probability on the option letters; a
        low value means the model does not answer in this format).

    Example:
        >>> mcq_accuracy(lm, data.load_arc("easy")[:100]).correct.mean()   # doctest: +SKIP
    """
    items = check_nonempty(items, "items", "pass at least one multiple-choice item")
    prompts, letter_ids = [], []
    for i, item in enumerate(items):
        prompt, ids = mcq_setup(backend, item, chat=chat, system=system, letter_prefix=letter_prefix, index=i)
        prompts.append(prompt)
        letter_ids.append(ids)
    logits, probs = _last_logits(
        backend, prompts, letter_ids, edits=edits, batch_size=batch_size, progress=progress, desc="mcq"
    )
    rows = []
    for i, (item, lg, pr) in enumerate(zip(items, logits, probs, strict=True)):
        pred = int(lg.argmax())
        rows.append(
            {
                "example_id": _example_id(item, i),
                "pred": pred,
                "answer": int(item.answer),
                "correct": pred == int(item.answer),
                "p_correct": float(lg.softmax(-1)[int(item.answer)]),
                "letter_mass": float(pr.sum()),
            }
        )
    return pd.DataFrame(rows)


def _truncate(batch: Batch, max_tokens: int, pad_id: int) -> Batch:
    """Keep the first ``max_tokens`` real tokens of each left-padded row, re-padded on the left."""
    lengths = batch.attention_mask.sum(dim=1).clamp(max=max_tokens)
    width = int(lengths.max())
    ids = torch.full((len(batch), width), pad_id, dtype=batch.input_ids.dtype, device=batch.input_ids.device)
    mask = torch.zeros((len(batch), width), dtype=batch.attention_mask.dtype, device=batch.input_ids.device)
    for row, (start, n) in enumerate(zip(batch.n_pad.tolist(), lengths.tolist(), strict=True)):
        ids[row, width - n :] = batch.input_ids[row, start : start + n]
        mask[row, width - n :] = 1
    return Batch(ids, mask)


def text_nll(
    backend: Backend,
    texts: Sequence[str],
    *,
    edits: Edits = None,
    max_tokens: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> tuple[Float[Tensor, " n"], Int[Tensor, " n"]]:
    """Summed next-token negative log-likelihood of each raw text (no chat template) under the (edited)
    model, and the number of tokens it predicts: the one token-loss computation behind every perplexity
    and log-likelihood in steerlab.

    With ``max_tokens`` each text is cut to its first ``max_tokens`` tokens. The first token is
    predicted by nothing, so a text of ``k`` tokens predicts ``k - 1``. Returns float32 and int64
    tensors on the CPU, one entry per text. A batch that runs out of device memory is retried in halves
    (`steerlab.memory`).

    Example:
        >>> nll, n = text_nll(lm, ["The cat sat.", "A dog ran."], edits=edits)   # doctest: +SKIP
        >>> perplexity, mean_loglik = math.exp(nll.sum() / n.sum()), -nll / n  # doctest: +SKIP
    """
    return text_nll_many(backend, texts, [edits], max_tokens=max_tokens, batch_size=batch_size, progress=progress)[0]


def text_nll_many(
    backend: Backend,
    texts: Sequence[str],
    edit_sets: Sequence[Edits],
    *,
    max_tokens: int | None = None,
    batch_size: int = 8,
    progress: bool = False,
) -> list[tuple[Float[Tensor, " n"], Int[Tensor, " n"]]]:
    """`text_nll` under each of several edit sets: each batch of texts runs once for all of them, sharing the
    unedited trunk (`Backend.token_losses_many`). One ``(nll, n)`` per edit set."""
    texts = check_nonempty(texts, "texts", "pass at least one text")
    _check_batch_size(batch_size)
    if max_tokens is not None and max_tokens < 2:
        raise SteerlabError(f"max_tokens must be at least 2 (one token predicts the next), got {max_tokens}")
    empty = [i for i, t in enumerate(texts) if not isinstance(t, str) or not t]
    if empty:
        raise SteerlabError(f"texts at indices {empty[:10]} are empty or not strings; drop them")
    edit_sets = list(edit_sets)

    def run(start: int, stop: int) -> list[tuple[Tensor, Tensor]]:
        batch = backend.tokenize(texts[start:stop], truncate="first" if max_tokens else False)
        if max_tokens is not None:
            batch = _truncate(batch, max_tokens, backend.tokenizer.pad_token_id)
        if len(edit_sets) == 1:
            losses = [backend.token_losses(batch, edits=edit_sets[0])]
        else:
            losses = backend.token_losses_many(batch, edit_sets)
        return [(nll.sum(dim=1).float().cpu(), mask.sum(dim=1).cpu()) for nll, mask in losses]

    parts = list(tqdm(memory.halving(len(texts), batch_size, run, what="batch of texts"), desc="token nll",
                      disable=not progress))  # fmt: skip
    return [(torch.cat([p[j][0] for p in parts]), torch.cat([p[j][1] for p in parts])) for j in range(len(edit_sets))]


def perplexity_on(
    backend: Backend,
    texts: Sequence[str],
    *,
    edits: Edits = None,
    max_tokens: int = 256,
    batch_size: int = 8,
    progress: bool = False,
) -> float:
    """Token-weighted perplexity of raw texts (no chat template) under the (edited) model.

    Each text is cut to its first ``max_tokens`` tokens; the result is
    ``exp(sum of token NLLs / number of predicted tokens)`` over all texts (see `text_nll`).

    Example:
        >>> perplexity_on(lm, data.load_text("wikitext")[:64], edits=edits)   # doctest: +SKIP
    """
    nll, n = text_nll(backend, texts, edits=edits, max_tokens=max_tokens, batch_size=batch_size, progress=progress)
    count = int(n.sum())
    if count == 0:
        raise SteerlabError("perplexity needs texts of at least two tokens; all texts given are one token long")
    return math.exp(float(nll.double().sum()) / count)


def kl_to_base(
    backend: Backend,
    prompts_or_texts: Sequence[str],
    *,
    edits: Edits,
    batch_size: int = 8,
    progress: bool = False,
) -> pd.DataFrame:
    """How far the edits move the next-token distributions: ``KL(p_base || p_steered)`` per example.

    The KL is taken from the base (unedited) distribution to the steered one,
    ``sum_v p_base(v) * (log p_base(v) - log p_steered(v))``, at every non-pad position of the
    already formatted strings (no template is applied).

    Returns:
        DataFrame with columns ``example_id`` (the index), ``kl`` (mean over positions), ``kl_last``
        (at the last position, where an answer is predicted) and ``n_tokens``.

    Example:
        >>> kl_to_base(lm, texts, edits=steer(vec, 4.0)).kl.mean()   # doctest: +SKIP
    """
    texts = check_nonempty(prompts_or_texts, "prompts_or_texts", "pass at least one string")
    _check_batch_size(batch_size)
    rows: list[dict] = []
    for start in tqdm(range(0, len(texts), batch_size), desc="kl to base", disable=not progress):
        batch = backend.tokenize(texts[start : start + batch_size])
        base = torch.log_softmax(backend.logits(batch).float(), dim=-1)
        steered = torch.log_softmax(backend.logits(batch, edits=edits).float(), dim=-1)
        kl = (base.exp() * (base - steered)).sum(dim=-1)  # [batch, pos]
        mask = batch.attention_mask.bool()
        n = mask.sum(dim=1)
        mean = (kl * mask).sum(dim=1) / n
        for row in range(len(batch)):
            rows.append(
                {
                    "example_id": start + row,
                    "kl": float(mean[row]),
                    "kl_last": float(kl[row, -1]),
                    "n_tokens": int(n[row]),
                }
            )
    return pd.DataFrame(rows)


def generations(
    backend: Backend,
    prompts: Sequence[str],
    *,
    edits: Edits = None,
    max_new_tokens: int = 64,
    chat: bool = True,
    system: str | None = None,
    batch_size: int = 8,
    progress: bool = False,
    **gen: Any,
) -> pd.DataFrame:
    """Completions for open-ended evaluation (greedy unless ``do_sample=True`` is passed in ``gen``).

    With ``chat=True`` each prompt is a user message put in the chat template; otherwise it is used
    as is. Extra keyword arguments go to `Backend.generate`.

    Returns:
        DataFrame with columns ``example_id`` (the index), ``prompt`` (as given) and ``completion``.

    Example:
        >>> generations(lm, ["Tell me about yourself."], edits=edits).to_csv("gens.csv")   # doctest: +SKIP
    """
    prompts = check_nonempty(prompts, "prompts", "pass at least one prompt")
    _check_batch_size(batch_size)
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise SteerlabError(f"prompts at indices {bad[:10]} are not strings")
    formatted = [backend.chat(p, system=system) if chat else p for p in prompts]
    completions: list[str] = []
    for start in tqdm(range(0, len(prompts), batch_size), desc="generate", disable=not progress):
        chunk = formatted[start : start + batch_size]
        completions += backend.generate(chunk, edits=edits, max_new_tokens=max_new_tokens, **gen)
    return pd.DataFrame({"example_id": range(len(prompts)), "prompt": prompts, "completion": completions})
