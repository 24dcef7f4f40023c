"""The `Backend` base class: one model behind one small interface, edits scoped to one call.

The values it runs (`Site`, `Positions`, `Edit`, `Batch`, `Prefix`, `ForwardOutput`, `EditCounts`) live
in `steerlab.sites`; only the two backend modules (`tl_backend`, `nnsight_backend`) know about
TransformerLens or nnsight.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from steerlab.errors import SteerlabError
from steerlab.prompts import format_chat
from steerlab.sites import Batch, Edit, EditCounts, ForwardOutput, Prefix, Site

logger = logging.getLogger(__name__)


class EditRunner:
    """Applies a group of edits at one site, tracking where each call's slice sits in the sequence.

    With a key/value cache, the first call sees the prompt and each later call one new token, so the
    slice starts where the previous one ended; without a cache every call starts at position 0.

    Each call also counts, per edit, the real (non-padding) positions it touched, into ``counts`` (a
    list per edit of Python ints and 0-d device tensors, read once at the end of the backend call).
    Which positions an edit covers is decided from Python ints where it can be (all of a decode step,
    none of it), so the hot path has no host-device sync.

    With ``copies=k`` the activations hold ``k`` copies of ``batch`` stacked along the batch dimension
    (`Backend.forward_many`: one copy per set of edits) and edit ``i`` touches copy ``copy_of[i]`` only.
    """

    def __init__(
        self, edits: Sequence[Edit], batch: Batch, incremental: bool, start: int = 0, index: Sequence[int] = (),
        copies: int = 1, copy_of: Sequence[int] = (),
    ):  # fmt: skip
        self.edits = list(edits)
        self.index = list(index) or list(range(len(self.edits)))  # each edit's place in the call's list
        self.prompt_len = batch.prompt_len
        self.n_pad = batch.n_pad
        self.incremental = incremental
        self.start = start  # where the first call's slice begins (after a cached prefix)
        self.seen = start
        self.copies = copies
        self.copy_of = list(copy_of) or [0] * len(self.edits)
        self.counts: list[list[int | Tensor]] = [[] for _ in self.edits]
        self._n_pad: dict[tuple, Tensor] = {}

    def _pads(self, h: Tensor) -> Tensor:
        """Left padding per row of ``h``, on its device (rows may be expanded, e.g. beams or samples)."""
        key = (h.device, h.shape[0])
        if key not in self._n_pad:
            n_pad = self.n_pad.to(h.device)
            if h.shape[0] != n_pad.shape[0]:
                n_pad = n_pad.repeat_interleave(h.shape[0] // n_pad.shape[0])
            self._n_pad[key] = n_pad
        return self._n_pad[key]

    def __call__(self, h: Tensor) -> Tensor:
        offset = self.seen if self.incremental else self.start
        length = h.shape[1]
        self.seen = offset + length
        if self.copies == 1:
            return self._apply(h, range(len(self.edits)), offset, length)
        parts = list(h.chunk(self.copies))
        for c in range(self.copies):
            which = [i for i, j in enumerate(self.copy_of) if j == c]
            if which:
                parts[c] = self._apply(parts[c], which, offset, length)
        return torch.cat(parts)

    def _apply(self, h: Tensor, which: Iterable[int], offset: int, length: int) -> Tensor:
        """Edits ``which`` applied to ``h``, the slice ``[offset, offset + length)``; their counts appended."""
        n_pad = self._pads(h)
        for i in which:
            edit, counts = self.edits[i], self.counts[i]
            cover = edit.positions.cover(offset, length, self.prompt_len)
            if cover == "none":
                counts.append(0)
                continue
            if cover == "all":
                h = edit.fn(h)
                if offset >= self.prompt_len:  # no padding after the prompt
                    counts.append(h.shape[0] * length)
                else:
                    counts.append(length * h.shape[0] - (n_pad - offset).clamp(0, length).sum())
                continue
            mask = edit.positions.mask(offset, length, self.prompt_len, n_pad)
            h = torch.where(mask.unsqueeze(-1), edit.fn(h), h)
            real = torch.arange(offset, offset + length, device=h.device).unsqueeze(0) >= n_pad.unsqueeze(1)
            counts.append((mask & real).sum())
        return h


def edit_runners(
    edits: Sequence[Edit], batch: Batch, incremental: bool, start: int = 0, copies: int = 1,
    copy_of: Sequence[int] = (),
) -> dict[Site, EditRunner]:  # fmt: skip
    """One `EditRunner` per edited site, each remembering its edits' places in ``edits``.

    With ``copies=k``, ``batch`` holds ``k`` stacked copies of one batch and edit ``i`` touches copy
    ``copy_of[i]`` (`Backend.forward_many`).
    """
    if copies > 1:
        batch = batch[: len(batch) // copies]
    by_site: dict[Site, list[int]] = defaultdict(list)
    for i, edit in enumerate(edits):
        by_site[edit.site].append(i)
    return {
        site: EditRunner([edits[i] for i in index], batch, incremental, start, index, copies,
                         [copy_of[i] for i in index] if copies > 1 else ())  # fmt: skip
        for site, index in by_site.items()
    }


def shared_blocks(edits: Sequence[Edit]) -> int:
    """How many decoder blocks run before the first of ``edits`` acts: blocks ``0 .. L - 1`` for an edit inside
    block ``L``, and block ``L`` too for an edit at ``resid_post.L`` (it acts on the block's output)."""
    return min((e.site.layer + (e.site.kind == "resid_post") for e in edits), default=0)


def tile(batch: Batch, k: int) -> Batch:
    """``k`` copies of ``batch`` stacked along the batch dimension (copy ``j`` is rows ``j * len(batch) ...``)."""
    return Batch(batch.input_ids.repeat(k, 1), batch.attention_mask.repeat(k, 1))


def cache_nbytes(cache: Any) -> int:
    """Bytes held by the tensors of a key/value cache (Hugging Face ``DynamicCache`` or TransformerLens's)."""
    layers = getattr(cache, "layers", None) or getattr(cache, "entries", None) or []
    return sum(v.numel() * v.element_size() for layer in layers for v in vars(layer).values() if isinstance(v, Tensor))


def collect_counts(edits: Sequence[Edit], runners: Sequence[EditRunner]) -> EditCounts:
    """The runners' counts as an `EditCounts` in the order of ``edits``; one host read per device."""
    values: dict[int, list] = {i: [] for i in range(len(edits))}
    for runner in runners:
        for i, counts in zip(runner.index, runner.counts, strict=True):
            values[i] = list(counts)
    by_device: dict[torch.device, list[tuple[int, int, Tensor]]] = defaultdict(list)
    for i, counts in values.items():
        for t, c in enumerate(counts):
            if isinstance(c, Tensor):
                by_device[c.device].append((i, t, c))
    for entries in by_device.values():
        for (i, t, _), n in zip(entries, torch.stack([c for *_, c in entries]).tolist(), strict=True):
            values[i][t] = int(n)
    return EditCounts(tuple(edits), tuple(tuple(values[i]) for i in range(len(edits))))


def count_hooks(module: torch.nn.Module) -> int:
    """Number of PyTorch hooks attached anywhere in ``module`` (used to check that none leak)."""
    total = 0
    for m in module.modules():
        for name in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_forward_hooks_with_kwargs"):
            total += len(getattr(m, name, {}) or {})
    return total


class Backend(ABC):
    """One model behind one small interface. Subclasses implement `_forward` and `_generate`.

    Every edit is scoped to one call: hooks are attached inside the call and removed in a
    ``finally`` block, so nothing outlives it, even when it raises.

    Every call with edits counts the token positions each edit touched (`EditCounts`, in
    ``ForwardOutput.edit_counts`` and ``last_edit_counts``) and raises if an edit touched none, unless
    called with ``allow_noop=True``: steering that silently does nothing is an error.
    """

    kind: ClassVar[str]

    def __init__(
        self, *, name: str, hf_model: torch.nn.Module, tokenizer: Any, device: torch.device, dtype: torch.dtype
    ):
        self.name = name
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.device = device
        self.dtype = dtype
        cfg = hf_model.config
        text_cfg = getattr(cfg, "text_config", None) or cfg
        self.n_layers: int = text_cfg.num_hidden_layers
        self.d_model: int = text_cfg.hidden_size
        self.model_type: str = getattr(text_cfg, "model_type", getattr(cfg, "model_type", "unknown"))
        self.last_edit_counts: EditCounts | None = None  # of the latest call with edits (see `EditCounts`)
        self._runners: list[EditRunner] = []
        self._copies: tuple[int, list[int]] | None = None  # during `forward_many`: copies, each edit's copy
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"

    # ------------------------------------------------------------------ primitives
    @abstractmethod
    def _forward(
        self, batch: Batch, edits: Sequence[Edit], record: Sequence[Site], grad: bool, prefix: Prefix | None,
        logits: bool | int = True,
    ) -> ForwardOutput:  # fmt: skip
        """Run ``batch`` (after ``prefix``'s cached tokens, if given); logits and records cover ``batch`` only.

        ``logits``: True (every position), ``k`` (the last ``k`` positions) or False (none: stop after the
        block of the deepest site in ``record``, `blocks_for`)."""

    @abstractmethod
    def _prefix(self, batch: Batch, record: Sequence[Site], blocks: int | None) -> Prefix:
        """Run ``batch`` unedited, keeping its key/value cache for reuse; only ``blocks`` blocks if given."""

    def _forward_many(
        self, batch: Batch, edits: Sequence[Edit], copy_of: Sequence[int], k: int, prefix: Prefix | None,
        keep: int | None,
    ) -> tuple[Tensor, Callable[[Tensor], Tensor]]:  # fmt: skip
        """``k`` copies of ``batch``, edit ``i`` acting on copy ``copy_of[i]`` (runners from `_edit_runners`).

        Returns ``(h, head)``: ``h`` stacks the copies (``[k * batch, pos, ...]``, the last ``keep`` positions if
        given) and ``head`` turns one copy's slice of ``h`` into logits. This default runs the copies as one
        batch (a tiled forward); a backend that can start mid-stack shares the blocks before the first edit.
        """
        if prefix is not None and prefix.cache is not None:
            raise SteerlabError(f"{type(self).__name__} cannot run several edit sets on a cached prefix at once")
        tiled_prefix = None if prefix is None else Prefix(tile(prefix.batch, k), None, {}, prefix.blocks)
        out = self._forward(tile(batch, k), edits, (), False, tiled_prefix, True if keep is None else keep)
        return out.logits, lambda logits: logits

    def blocks_for(self, site: Site) -> int:
        """How many decoder blocks a forward pass runs to reach ``site`` (a pass that reads no logits stops
        there): blocks ``0 .. L`` for a site of layer ``L``."""
        return site.layer + 1

    @abstractmethod
    def _generate(
        self, batch: Batch, edits: Sequence[Edit], max_new_tokens: int, use_cache: bool, gen_kwargs: dict
    ) -> Int[Tensor, "batch total"]: ...

    def _edit_runners(
        self, edits: Sequence[Edit], batch: Batch, incremental: bool, start: int = 0
    ) -> dict[Site, EditRunner]:
        """Runners for one call's edits (see `edit_runners`); their counts are read when the call ends."""
        copies, copy_of = self._copies or (1, ())
        runners = edit_runners(edits, batch, incremental, start, copies, copy_of)
        self._runners.extend(runners.values())
        return runners

    def _counts_come_back(self) -> bool:
        """Whether edits run in this process, so their counts can be read (not for remote execution)."""
        return True

    def _finish(self, edits: Sequence[Edit], allow_noop: bool) -> EditCounts | None:
        """Read the call's edit counts once, keep them in ``last_edit_counts``, raise on an idle edit."""
        runners, self._runners = self._runners, []
        if not edits:
            return None
        if not self._counts_come_back():
            self.last_edit_counts = None
            return None
        counts = self.last_edit_counts = collect_counts(edits, runners)
        if not allow_noop:
            counts.check()
        return counts

    @abstractmethod
    def hook_name(self, site: Site) -> str:
        """The backend's own name for a site (e.g. ``blocks.12.hook_resid_post``)."""

    @property
    @abstractmethod
    def model(self) -> torch.nn.Module:
        """The module the backend runs (the HookedTransformer, or the HF model nnsight wraps)."""

    def input_embeddings(self) -> Float[Tensor, "vocab d_model"]:
        """The token embedding matrix as the residual stream receives it: row ``t`` is ``resid_pre.0``
        of token ``t`` (any embedding scale, e.g. Gemma's ``sqrt(d_model)``, applied).

        With an edit at ``Site(0, "resid_pre")`` that writes ``one_hot @ input_embeddings()`` into chosen
        positions, a forward pass is differentiable in the tokens (greedy coordinate gradient,
        `steerlab.robustness.adversarial`). Weights are shared, not copied: do not modify the result.
        """
        raise SteerlabError(f"{type(self).__name__} does not expose its input embeddings")

    @property
    def weight_processing(self) -> str:
        """How weights differ from the checkpoint's ("none" unless a backend folds or centres them)."""
        return "none"

    # ------------------------------------------------------------------ tokens
    def site(self, site: Site | str | int) -> Site:
        """Normalise a site given as a Site, ``"resid_post.12"`` or a layer number; checks the range."""
        if isinstance(site, int):
            site = Site(site)
        return Site.parse(site).resolve(self.n_layers, self.name)

    def chat(self, user: str, *, system: str | None = None, assistant_prefix: str = "") -> str:
        """Format one user turn with the model's chat template, opening the assistant turn.

        ``assistant_prefix`` is appended after the assistant header, e.g. ``"("`` for A/B answers.
        A model without a chat template (a base model) gets a plain ``User:/Assistant:`` format.
        """
        return format_chat(self.tokenizer, user, system=system, assistant_prefix=assistant_prefix)

    @property
    def context_length(self) -> int | None:
        """The longest sequence the model was trained on (``max_position_embeddings``), or None if unknown."""
        cfg = getattr(self, "hf_config", None) or self.hf_model.config
        cfg = getattr(cfg, "text_config", None) or cfg
        limits = [getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None),
                  getattr(getattr(self.model, "cfg", None), "n_ctx", None)]  # TransformerLens may cap it lower
        limits = [int(n) for n in limits if isinstance(n, int) and n > 0]
        return min(limits) if limits else None

    def tokenize(self, prompts: str | Sequence[str], *, truncate: bool | Literal["first", "last"] = False) -> Batch:
        """Left-padded token ids for already formatted prompts (see `chat`). No BOS is added where
        the tokenizer adds none; a prompt that already starts with the BOS token gets no second one.

        A prompt longer than the model's context (`context_length`) raises a `SteerlabError`, unless
        ``truncate`` says which tokens to keep: ``"last"`` (or True; the end of a chat prompt matters)
        or ``"first"`` (e.g. scoring a long text's beginning); truncation is logged as a warning.
        """
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = list(prompts)
        if len(prompts) == 0:
            raise SteerlabError("no prompts were given; pass at least one string")
        wrong = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
        if wrong:
            bad = prompts[wrong[0]]
            raise SteerlabError(
                f"prompt {wrong[0]} is a {type(bad).__name__} ({bad!r:.60}), not text; pass strings "
                "(formatted with lm.chat(...) for chat models)"
            )
        if truncate not in (False, True, "first", "last"):
            raise SteerlabError(f"truncate must be False, True, 'first' or 'last', got {truncate!r}")
        bos = self.tokenizer.bos_token
        add_special = not (bos and all(p.startswith(bos) for p in prompts))
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=add_special)
        lengths = enc["attention_mask"].sum(dim=1)
        if bool((lengths == 0).any()):
            empty = [i for i, n in enumerate(lengths.tolist()) if n == 0]
            raise SteerlabError(f"prompt(s) {empty[:5]} give no tokens (empty text?); every prompt needs some text")
        limit = self.context_length
        if limit is not None and enc["input_ids"].shape[1] > limit:
            longest = int(lengths.argmax())
            if not truncate:
                raise SteerlabError(
                    f"prompt {longest} has {int(lengths[longest])} tokens, more than {self.name}'s context of {limit} "
                    "tokens (max_position_embeddings); beyond it the model produces garbage. Shorten the prompt, or "
                    "pass truncate='last' (or 'first') to tokenize() to keep only the tokens that fit"
                )
            keep = "first" if truncate == "first" else "last"
            logger.warning("keeping the %s %d tokens of %d prompt(s) longer than the model's context",
                           keep, limit, int((lengths > limit).sum()))  # fmt: skip
            side = self.tokenizer.truncation_side
            self.tokenizer.truncation_side = "right" if keep == "first" else "left"
            try:
                enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=add_special,
                                     truncation=True, max_length=limit)  # fmt: skip
            finally:
                self.tokenizer.truncation_side = side
        return Batch(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))

    def _as_batch(self, prompts: str | Sequence[str] | Batch) -> Batch:
        return prompts if isinstance(prompts, Batch) else self.tokenize(prompts)

    def _check_edits(self, edits: Sequence[Edit] | Edit | None) -> list[Edit]:
        if edits is None:
            return []
        if isinstance(edits, Edit):
            edits = [edits]
        for edit in edits:  # edits made from a SteeringVector check it was made on this model (`steer`)
            check = getattr(edit.fn, "check_backend", None)
            if check is not None:
                check(self)
        return [Edit(self.site(e.site), e.fn, e.positions) for e in edits]

    # ------------------------------------------------------------------ public calls
    def forward(
        self,
        prompts: str | Sequence[str] | Batch,
        *,
        edits: Sequence[Edit] | Edit | None = None,
        record: Sequence[Site | str | int] = (),
        grad: bool = False,
        prefix: Prefix | None = None,
        allow_noop: bool = False,
        logits: bool | int = True,
    ) -> ForwardOutput:
        """Logits (and activations at ``record`` sites, after any edit there) for one batch.

        With ``prefix`` (from `prefix`), ``prompts`` must be a `Batch` of suffix tokens (right-padded,
        one row per prefix row); only the suffix is computed, attending to the cached prefix. Edit
        positions count from the start of the prefix, and the prompt is prefix plus suffix.

        ``logits``: True (every position), ``k`` (the last ``k`` positions: a ``[batch, k, vocab]`` tensor, so
        scoring the next token does not hold a vocabulary-wide row per position) or False (no logits: the pass
        stops after the block of the deepest ``record`` site and skips the rest of the model, its final norm
        and the unembedding; ``logits`` of the result is None).

        ``edit_counts`` of the result says how many token positions each edit touched; an edit that
        touched none raises a `SteerlabError` unless ``allow_noop=True``.
        """
        batch = self._as_batch(prompts)
        sites = sorted({self.site(s) for s in record}, key=lambda s: s.order)
        logits = _check_logits(logits)
        if logits is False and not sites:
            raise SteerlabError("forward(..., logits=False) with nothing to record computes nothing; pass record=")
        edits = self._check_edits(edits)
        if prefix is not None:
            _check_prefix_untouched(prefix, batch, edits)
            self._check_prefix_blocks(prefix, sites if logits is False else None)
        self._runners = []
        with torch.set_grad_enabled(grad):
            out = self._forward(batch, edits, sites, grad, prefix, logits)
        counts = self._finish(edits, allow_noop)
        return out if counts is None else ForwardOutput(out.logits, out.activations, counts)

    def forward_many(
        self,
        prompts: str | Sequence[str] | Batch,
        edit_sets: Sequence[Sequence[Edit] | Edit | None],
        *,
        prefix: Prefix | None = None,
        logits: bool | int = True,
        reduce: Callable[[Tensor], Any] | None = None,
        allow_noop: bool = False,
    ) -> list[ForwardOutput]:
        """One batch under each of several edit sets (e.g. the strengths of a sweep), sharing the unedited trunk.

        The blocks before the first edit (`shared_blocks`: up to block ``L`` for edits at ``resid_post.L``)
        are the same for every set: they run once, on the batch, and only the rest of the model runs for the
        ``k`` sets, as one batch of ``k`` copies. The results equal ``k`` calls of `forward` (to float rounding
        of the larger batch). With ``prefix`` the batch is the suffix after a cached prefix, as in `forward`.

        Args:
            edit_sets: one list of edits per result (an empty one: the unedited model).
            logits: True (every position) or ``k`` (the last ``k`` positions).
            reduce: applied to each set's logits as soon as they are computed (e.g. token losses), so the
                logits of only one set exist at a time; each result's ``logits`` then holds its return value.

        Returns:
            One `ForwardOutput` per edit set (logits and that set's ``edit_counts``; no activations).

        Example:
            >>> outs = lm.forward_many(batch, [steer(v, c) for c in (-4.0, 4.0, 8.0)], logits=1)   # doctest: +SKIP
            >>> [o.logits[:, -1] for o in outs]                                                    # doctest: +SKIP
        """
        batch = self._as_batch(prompts)
        keep = _check_logits(logits)
        if keep is False:
            raise SteerlabError("forward_many scores logits: pass logits=True or a number of last positions")
        sets = [self._check_edits(e) for e in edit_sets]
        if not sets:
            raise SteerlabError("forward_many needs at least one edit set (an empty list is the unedited model)")
        flat = [e for es in sets for e in es]
        copy_of = [j for j, es in enumerate(sets) for _ in es]
        if prefix is not None:
            _check_prefix_untouched(prefix, batch, flat)
            self._check_prefix_blocks(prefix, None)
        keep = None if keep is True else keep
        self._runners = []
        if not flat:  # nothing edited: one forward serves every set
            with torch.no_grad():
                out = self._forward(batch, (), (), False, prefix, True if keep is None else keep).logits
            value = out if reduce is None else reduce(out)
            return [ForwardOutput(value) for _ in sets]
        self._copies = (len(sets), copy_of)
        try:
            with torch.no_grad():
                h, head = self._forward_many(batch, flat, copy_of, len(sets), prefix, keep)
        finally:
            self._copies = None
        counts = self._finish(flat, allow_noop)
        outs = []
        with torch.no_grad():
            for j, part in enumerate(h.chunk(len(sets))):
                value = head(part)
                mine = None if counts is None else EditCounts(
                    tuple(sets[j]), tuple(c for c, i in zip(counts.per_forward, copy_of, strict=True) if i == j)
                )  # fmt: skip
                outs.append(ForwardOutput(value if reduce is None else reduce(value), {}, mine))
        return outs

    def _check_prefix_blocks(self, prefix: Prefix, sites: Sequence[Site] | None) -> None:
        """A prefix computed with ``stop_at`` holds the early blocks only: refuse a call that needs later ones."""
        if prefix.blocks is None:
            return
        needed = self.n_layers if sites is None else max(self.blocks_for(s) for s in sites)
        if needed > prefix.blocks:
            what = "logits" if sites is None else f"site {max(sites, key=lambda s: s.order)}"
            raise SteerlabError(
                f"this prefix ran only {prefix.blocks} of {self.n_layers} blocks (computed with stop_at=), but the "
                f"call reads {what}, which needs {needed}; compute the prefix with a deeper stop_at, or without one"
            )

    def prefix(
        self,
        prompts: str | Sequence[str] | Batch,
        *,
        record: Sequence[Site | str | int] = (),
        stop_at: Site | str | int | None = None,
    ) -> Prefix:
        """Compute a prompt prefix once (no edits) for reuse by `forward(..., prefix=...)`.

        ``stop_at``: the deepest site later calls will read with ``logits=False`` (e.g. extraction); the prefix
        then runs and caches only the blocks up to it. None (default): every block, so later calls may
        score logits.

        Example:
            >>> pre = lm.prefix(prompts_without_last_token)                   # doctest: +SKIP
            >>> lm.forward(last_tokens, prefix=pre, edits=steer(v, 4.0))      # doctest: +SKIP
        """
        batch = self._as_batch(prompts)
        sites = sorted({self.site(s) for s in record}, key=lambda s: s.order)
        blocks = None if stop_at is None else self.blocks_for(self.site(stop_at))
        if blocks is not None and sites:
            blocks = max(blocks, *(self.blocks_for(s) for s in sites))
        with torch.no_grad():
            return self._prefix(batch, sites, None if blocks == self.n_layers else blocks)

    def logits(self, prompts, *, edits=None, allow_noop: bool = False) -> Float[Tensor, "batch pos vocab"]:
        return self.forward(prompts, edits=edits, allow_noop=allow_noop).logits

    def record(self, prompts, sites: Sequence[Site | str | int]) -> dict[Site, Tensor]:
        """Activations at many sites and layers from one forward pass, which stops after the deepest site's block."""
        return self.forward(prompts, record=sites, logits=False).activations

    def token_losses(
        self, texts: str | Sequence[str] | Batch, *, edits=None, grad: bool = False, allow_noop: bool = False
    ) -> tuple[Float[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
        """Per-token negative log-likelihood of each text under the (edited) model.

        Returns ``(nll, mask)``, both ``[batch, pos - 1]``: ``nll[b, i]`` is the loss of token ``i + 1``
        and ``mask`` is False at padding.
        """
        batch = self._as_batch(texts)
        return token_nll(self.forward(batch, edits=edits, grad=grad, allow_noop=allow_noop).logits, batch)

    def token_losses_many(
        self, texts: str | Sequence[str] | Batch, edit_sets: Sequence, *, allow_noop: bool = False
    ) -> list[tuple[Float[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]]:
        """`token_losses` under each of several edit sets, sharing the unedited trunk (`forward_many`)."""
        batch = self._as_batch(texts)
        outs = self.forward_many(batch, edit_sets, reduce=lambda lg: token_nll(lg, batch), allow_noop=allow_noop)
        return [o.logits for o in outs]

    def generate_ids(
        self,
        prompts: str | Sequence[str] | Batch,
        *,
        edits=None,
        max_new_tokens: int = 32,
        use_cache: bool = True,
        allow_noop: bool = False,
        **gen_kwargs,
    ) -> Int[Tensor, "batch total"]:
        """Prompt plus generated token ids (greedy unless ``do_sample=True`` is passed).

        ``last_edit_counts`` then holds the positions each edit touched at the prefill and at each
        decode step; an edit that touched none raises unless ``allow_noop=True``.
        """
        if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise SteerlabError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        batch = self._as_batch(prompts)
        limit = self.context_length
        if limit is not None and batch.prompt_len + max_new_tokens > limit:
            raise SteerlabError(
                f"{batch.prompt_len} prompt tokens + max_new_tokens={max_new_tokens} exceed {self.name}'s context of "
                f"{limit} tokens; lower max_new_tokens to {max(limit - batch.prompt_len, 0)} or shorten the prompt"
            )
        gen_kwargs.setdefault("do_sample", False)
        edits = self._check_edits(edits)
        self._runners = []
        with torch.no_grad():
            ids = self._generate(batch, edits, max_new_tokens, use_cache, gen_kwargs)
        self._finish(edits, allow_noop)
        return ids

    def generate(self, prompts: str | Sequence[str], *, edits=None, max_new_tokens: int = 32, **kwargs) -> list[str]:
        """Generated continuations (text after the prompt, special tokens removed)."""
        batch = self._as_batch(prompts)
        ids = self.generate_ids(batch, edits=edits, max_new_tokens=max_new_tokens, **kwargs)
        return self.tokenizer.batch_decode(ids[:, batch.prompt_len :], skip_special_tokens=True)

    def n_hooks(self) -> int:
        """Hooks currently attached to the model; zero outside a call."""
        return count_hooks(self.model)

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({self.name!r}, n_layers={self.n_layers}, d_model={self.d_model}, device={self.device})"


def token_nll(logits: Float[Tensor, "batch pos vocab"], batch: Batch) -> tuple[Tensor, Tensor]:
    """Per-token negative log-likelihood ``[batch, pos - 1]`` of ``batch``'s tokens under ``logits`` and the mask
    of real (non-padding) predictions; padding scores 0."""
    logits = logits.float()
    targets = batch.input_ids[:, 1:].to(logits.device)
    nll = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
    ).view(targets.shape)
    mask = (batch.attention_mask[:, 1:].bool() & batch.attention_mask[:, :-1].bool()).to(logits.device)
    return nll * mask, mask


def _check_logits(logits) -> bool | int:
    if isinstance(logits, bool) or (isinstance(logits, int) and logits >= 1):
        return logits
    raise SteerlabError(f"logits must be True (every position), False (none) or a number of last positions >= 1, "
                        f"got {logits!r}")  # fmt: skip


def _check_prefix_untouched(prefix: Prefix, suffix: Batch, edits: Sequence[Edit]) -> None:
    """A cached prefix was computed without edits: an edit reaching into it would be silently lost."""
    full = prefix.join(suffix)
    for edit in edits:
        if bool(edit.positions.mask(0, prefix.batch.prompt_len, full.prompt_len, full.n_pad).any()):
            raise SteerlabError(
                f"edit at {edit.site} with positions {edit.positions} touches the cached prefix, which was computed "
                "without edits; steer only suffix positions (e.g. LAST_PROMPT) or run without a prefix"
            )


@contextlib.contextmanager
def removing(handles: list) -> Iterator[list]:
    """Collect PyTorch hook handles and remove them all on exit, even on error."""
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()
        handles.clear()
