"""The backend interface: abstract sites, token positions, edits, and the `Backend` base class.

Everything above this module speaks in `Site`s, `Edit`s and tensors; only the two backend modules
(`tl_backend`, `nnsight_backend`) know about TransformerLens or nnsight.

Sites are named as in TransformerLens, for any layer (negative layers count from the end):

| kind         | what it is                                              | TransformerLens hook          |
|--------------|---------------------------------------------------------|-------------------------------|
| `resid_pre`  | residual stream entering block L                        | `blocks.L.hook_resid_pre`     |
| `attn_out`   | the attention block's output added to the residual      | `blocks.L.hook_attn_out`      |
| `mlp_in`     | the MLP's input after its normalisation (weight applied)| output of `blocks.L.ln2`      |
| `mlp_out`    | the MLP block's output added to the residual            | `blocks.L.hook_mlp_out`       |
| `resid_post` | residual stream leaving block L                         | `blocks.L.hook_resid_post`    |

Without weight processing, `resid_post[L]` equals Hugging Face `hidden_states[L + 1]` for every
layer but the last (HF applies the final norm to its last hidden state).

Prompts are left-padded, so every prompt in a batch ends at the same index `P - 1` and generated
tokens start at `P`. Positions used by `Positions` are absolute indices in that padded layout.
"""

from __future__ import annotations

import contextlib
import logging
import math
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from steerlab.errors import SteerlabError

logger = logging.getLogger(__name__)

SiteKind = Literal["resid_pre", "attn_out", "mlp_in", "mlp_out", "resid_post"]
SITE_KINDS: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_in", "mlp_out", "resid_post")
"""Site kinds in the order a block computes them."""


@dataclass(frozen=True)
class Site:
    """A place in the model: a site kind at a layer, e.g. ``Site(12, "resid_post")``.

    Example:
        >>> Site.parse("resid_post.12")
        Site(layer=12, kind='resid_post')
        >>> Site(-1).resolve(30)
        Site(layer=29, kind='resid_post')
    """

    layer: int
    kind: str = "resid_post"

    def __post_init__(self) -> None:
        if self.kind not in SITE_KINDS:
            raise SteerlabError(f"unknown site kind {self.kind!r}; valid kinds: {', '.join(SITE_KINDS)}")
        if not isinstance(self.layer, int) or isinstance(self.layer, bool):
            raise SteerlabError(f"a site's layer must be an int, got {self.layer!r}")

    def resolve(self, n_layers: int, model_name: str = "this model") -> Site:
        """Return the site with a non-negative layer, or raise if the layer is out of range."""
        layer = self.layer + n_layers if self.layer < 0 else self.layer
        if not 0 <= layer < n_layers:
            raise SteerlabError(
                f"layer {self.layer} is out of range for {model_name} ({n_layers} layers: 0..{n_layers - 1}); "
                "negative indices count from the end"
            )
        return Site(layer, self.kind)

    @property
    def order(self) -> tuple[int, int]:
        """Sort key: the order in which a forward pass reaches this site."""
        return (self.layer, SITE_KINDS.index(self.kind))

    @classmethod
    def parse(cls, text: str | Site) -> Site:
        """Parse ``"resid_post.12"`` (or ``"12"``, meaning resid_post) into a Site."""
        if isinstance(text, Site):
            return text
        kind, _, layer = str(text).rpartition(".")
        try:
            return cls(int(layer), kind or "resid_post")
        except ValueError:
            raise SteerlabError(
                f"cannot read site {text!r}; write it as '<kind>.<layer>', e.g. 'resid_post.12'"
            ) from None

    def __str__(self) -> str:
        return f"{self.kind}.{self.layer}"


@dataclass(frozen=True)
class Positions:
    """Which token positions an edit touches.

    Kinds: ``all``; ``prompt`` (prompt tokens only); ``generated`` (tokens produced by generation);
    ``last_prompt`` (the last prompt token, where an answer is predicted); ``from`` (prompt token
    ``start`` onward, counted within each prompt, so left padding does not shift it; a negative
    ``start`` counts back from the end of the prompt).

    Example:
        >>> Positions.from_index(-3)   # the last three prompt tokens and everything generated
        Positions(kind='from', start=-3)
    """

    kind: Literal["all", "prompt", "generated", "last_prompt", "from"] = "all"
    start: int = 0

    def __post_init__(self) -> None:
        valid = ("all", "prompt", "generated", "last_prompt", "from")
        if self.kind not in valid:
            raise SteerlabError(f"unknown positions kind {self.kind!r}; valid: {', '.join(valid)}")

    @classmethod
    def from_index(cls, start: int) -> Positions:
        return cls("from", start)

    def mask(
        self, offset: int, length: int, prompt_len: int, n_pad: Int[Tensor, " batch"]
    ) -> Bool[Tensor, "batch pos"]:
        """Boolean mask over a slice ``[offset, offset + length)`` of absolute positions."""
        pos = torch.arange(offset, offset + length, device=n_pad.device).unsqueeze(0)  # [1, pos]
        pos = pos.expand(n_pad.shape[0], -1)
        if self.kind == "all":
            return torch.ones_like(pos, dtype=torch.bool)
        if self.kind == "prompt":
            return pos < prompt_len
        if self.kind == "generated":
            return pos >= prompt_len
        if self.kind == "last_prompt":
            return pos == prompt_len - 1
        first = prompt_len + self.start if self.start < 0 else n_pad.unsqueeze(1) + self.start
        return pos >= first


ALL = Positions("all")
PROMPT = Positions("prompt")
GENERATED = Positions("generated")
LAST_PROMPT = Positions("last_prompt")


@dataclass(frozen=True)
class Edit:
    """A pure function of one site's activation, ``fn(h: [batch, pos, d_model]) -> same shape``,
    applied only at the chosen positions. Build edits with `steerlab.interventions`."""

    site: Site
    fn: Callable[[Tensor], Tensor]
    positions: Positions = ALL


@dataclass(frozen=True)
class Batch:
    """Left-padded token ids. Every prompt ends at index ``prompt_len - 1``."""

    input_ids: Int[Tensor, "batch pos"]
    attention_mask: Int[Tensor, "batch pos"]

    @property
    def prompt_len(self) -> int:
        return self.input_ids.shape[1]

    @property
    def n_pad(self) -> Int[Tensor, " batch"]:
        return (self.attention_mask == 0).sum(dim=1)

    @property
    def position_ids(self) -> Int[Tensor, "batch pos"]:
        """Positions counted from each prompt's first real token (pads get 0)."""
        return (self.attention_mask.cumsum(dim=1) - 1).clamp(min=0)

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, index: slice) -> Batch:
        return Batch(self.input_ids[index], self.attention_mask[index])


@dataclass
class Prefix:
    """Key/value cache of a prompt prefix, computed once (unedited) and reused by later calls.

    ``activations`` holds the prefix's activations at the sites recorded when it was computed.
    """

    batch: Batch
    cache: Any
    activations: dict[Site, Tensor] = field(default_factory=dict)

    def join(self, suffix: Batch) -> Batch:
        """The full sequence (prefix then suffix) as one batch."""
        if len(suffix) != len(self.batch):
            raise SteerlabError(f"suffix batch has {len(suffix)} rows but the prefix has {len(self.batch)}")
        return Batch(
            torch.cat([self.batch.input_ids, suffix.input_ids], dim=1),
            torch.cat([self.batch.attention_mask, suffix.attention_mask], dim=1),
        )


@dataclass(frozen=True)
class EditCounts:
    """How many token positions each edit of one call touched, per forward pass.

    ``per_forward[i][t]`` counts the positions (padding excluded) where edit ``i`` was applied in forward
    pass ``t`` of the call: a plain forward has one pass; a generation has the prefill (``t = 0``) and
    then one pass per decode step. An edit counts where it was applied, whatever its value (``alpha=0``
    counts too): a zero total means the edit never ran, e.g. positions that miss every token, or a
    site the forward pass never reached.

    Example:
        >>> lm.generate(prompts, edits=steer(vec, 4.0), max_new_tokens=3)   # doctest: +SKIP
        >>> lm.last_edit_counts.per_forward                                  # doctest: +SKIP
        ((38, 2, 2),)    # 2 prompts: 38 prompt tokens at the prefill, then one per prompt per step
    """

    edits: tuple[Edit, ...]
    per_forward: tuple[tuple[int, ...], ...]

    @property
    def totals(self) -> tuple[int, ...]:
        """Positions each edit touched over the whole call."""
        return tuple(sum(c) for c in self.per_forward)

    @property
    def n_forwards(self) -> int:
        return max((len(c) for c in self.per_forward), default=0)

    def frame(self):
        """Tidy DataFrame: one row per edit and forward pass (``edit, site, positions, forward, count``)."""
        import pandas as pd

        rows = [
            {"edit": i, "site": str(e.site), "positions": _describe(e.positions), "forward": t, "count": n}
            for i, (e, counts) in enumerate(zip(self.edits, self.per_forward, strict=True))
            for t, n in enumerate(counts)
        ]
        return pd.DataFrame(rows, columns=["edit", "site", "positions", "forward", "count"])

    def check(self) -> None:
        """Raise if an edit touched no token position in the whole call."""
        idle = [i for i, total in enumerate(self.totals) if total == 0]
        if idle:
            what = "; ".join(f"edit {i} at {self.edits[i].site} on {_describe(self.edits[i].positions)}" for i in idle)
            raise SteerlabError(
                f"steering did nothing: {what} touched no token in this call ({self.n_forwards} forward pass(es)). "
                "Check the positions against the prompt length (e.g. 'generated' positions in a plain forward, or "
                "'from' an index past the prompt's end), or pass allow_noop=True if an idle edit is intended"
            )


def _describe(positions: Positions) -> str:
    return f"from {positions.start}" if positions.kind == "from" else positions.kind


@dataclass(frozen=True)
class ForwardOutput:
    logits: Float[Tensor, "batch pos vocab"]
    activations: dict[Site, Float[Tensor, "batch pos d_model"]] = field(default_factory=dict)
    edit_counts: EditCounts | None = None  # token positions each edit touched (see `EditCounts`)


def _cover(positions: Positions, offset: int, length: int, prompt_len: int) -> str | None:
    """``"all"`` or ``"none"`` when ``positions`` covers all or none of ``[offset, offset + length)`` whatever
    the padding; ``None`` when it takes a mask. Python ints only, so deciding costs no device sync."""
    end = offset + length
    first = {
        "all": 0, "prompt": 0, "generated": prompt_len, "last_prompt": prompt_len - 1,
        "from": prompt_len + positions.start if positions.start < 0 else None,
    }[positions.kind]  # fmt: skip
    last = {"prompt": prompt_len, "last_prompt": prompt_len}.get(positions.kind, end)  # exclusive
    if first is None:  # counted from each prompt's first real token: depends on the padding
        return None
    if first <= offset and end <= last:
        return "all"
    if end <= first or last <= offset:
        return "none"
    return None


class EditRunner:
    """Applies a group of edits at one site, tracking where each call's slice sits in the sequence.

    With a key/value cache, the first call sees the prompt and each later call one new token, so the
    slice starts where the previous one ended; without a cache every call starts at position 0.

    Each call also counts, per edit, the real (non-padding) positions it touched, into ``counts`` (a
    list per edit of Python ints and 0-d device tensors, read once at the end of the backend call).
    Which positions an edit covers is decided from Python ints where it can be (all of a decode step,
    none of it), so the hot path has no host-device sync.
    """

    def __init__(
        self, edits: Sequence[Edit], batch: Batch, incremental: bool, start: int = 0, index: Sequence[int] = ()
    ):
        self.edits = list(edits)
        self.index = list(index) or list(range(len(self.edits)))  # each edit's place in the call's list
        self.prompt_len = batch.prompt_len
        self.n_pad = batch.n_pad
        self.incremental = incremental
        self.start = start  # where the first call's slice begins (after a cached prefix)
        self.seen = start
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
        n_pad = self._pads(h)
        for edit, counts in zip(self.edits, self.counts, strict=True):
            cover = _cover(edit.positions, offset, length, self.prompt_len)
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


def edit_runners(edits: Sequence[Edit], batch: Batch, incremental: bool, start: int = 0) -> dict[Site, EditRunner]:
    """One `EditRunner` per edited site, each remembering its edits' places in ``edits``."""
    by_site: dict[Site, list[int]] = defaultdict(list)
    for i, edit in enumerate(edits):
        by_site[edit.site].append(i)
    return {
        site: EditRunner([edits[i] for i in index], batch, incremental, start, index)
        for site, index in by_site.items()
    }


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
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"

    # ------------------------------------------------------------------ primitives
    @abstractmethod
    def _forward(
        self, batch: Batch, edits: Sequence[Edit], record: Sequence[Site], grad: bool, prefix: Prefix | None
    ) -> ForwardOutput:
        """Run ``batch`` (after ``prefix``'s cached tokens, if given); logits and records cover ``batch`` only."""

    @abstractmethod
    def _prefix(self, batch: Batch, record: Sequence[Site]) -> Prefix:
        """Run ``batch`` unedited, keeping its key/value cache for reuse."""

    @abstractmethod
    def _generate(
        self, batch: Batch, edits: Sequence[Edit], max_new_tokens: int, use_cache: bool, gen_kwargs: dict
    ) -> Int[Tensor, "batch total"]: ...

    def _edit_runners(
        self, edits: Sequence[Edit], batch: Batch, incremental: bool, start: int = 0
    ) -> dict[Site, EditRunner]:
        """Runners for one call's edits (see `edit_runners`); their counts are read when the call ends."""
        runners = edit_runners(edits, batch, incremental, start)
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

    def tokenize(self, prompts: str | Sequence[str]) -> Batch:
        """Left-padded token ids for already formatted prompts (see `chat`). No BOS is added where
        the tokenizer adds none; a prompt that already starts with the BOS token gets no second one."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if len(prompts) == 0:
            raise SteerlabError("no prompts were given; pass at least one string")
        bos = self.tokenizer.bos_token
        add_special = not (bos and all(p.startswith(bos) for p in prompts))
        enc = self.tokenizer(list(prompts), return_tensors="pt", padding=True, add_special_tokens=add_special)
        return Batch(enc["input_ids"].to(self.device), enc["attention_mask"].to(self.device))

    def _as_batch(self, prompts: str | Sequence[str] | Batch) -> Batch:
        return prompts if isinstance(prompts, Batch) else self.tokenize(prompts)

    def _check_edits(self, edits: Sequence[Edit] | Edit | None) -> list[Edit]:
        if edits is None:
            return []
        if isinstance(edits, Edit):
            edits = [edits]
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
    ) -> ForwardOutput:
        """Logits (and activations at ``record`` sites, after any edit there) for one batch.

        With ``prefix`` (from `prefix`), ``prompts`` must be a `Batch` of suffix tokens (right-padded,
        one row per prefix row); only the suffix is computed, attending to the cached prefix. Edit
        positions count from the start of the prefix, and the prompt is prefix plus suffix.

        ``edit_counts`` of the result says how many token positions each edit touched; an edit that
        touched none raises a `SteerlabError` unless ``allow_noop=True``.
        """
        batch = self._as_batch(prompts)
        sites = sorted({self.site(s) for s in record}, key=lambda s: s.order)
        edits = self._check_edits(edits)
        if prefix is not None:
            _check_prefix_untouched(prefix, batch, edits)
        self._runners = []
        with torch.set_grad_enabled(grad):
            out = self._forward(batch, edits, sites, grad, prefix)
        counts = self._finish(edits, allow_noop)
        return out if counts is None else ForwardOutput(out.logits, out.activations, counts)

    def prefix(self, prompts: str | Sequence[str] | Batch, *, record: Sequence[Site | str | int] = ()) -> Prefix:
        """Compute a prompt prefix once (no edits) for reuse by `forward(..., prefix=...)`.

        Example:
            >>> pre = lm.prefix(prompts_without_last_token)                   # doctest: +SKIP
            >>> lm.forward(last_tokens, prefix=pre, edits=steer(v, 4.0))      # doctest: +SKIP
        """
        batch = self._as_batch(prompts)
        sites = sorted({self.site(s) for s in record}, key=lambda s: s.order)
        with torch.no_grad():
            return self._prefix(batch, sites)

    def logits(self, prompts, *, edits=None, allow_noop: bool = False) -> Float[Tensor, "batch pos vocab"]:
        return self.forward(prompts, edits=edits, allow_noop=allow_noop).logits

    def record(self, prompts, sites: Sequence[Site | str | int]) -> dict[Site, Tensor]:
        """Activations at many sites and layers from one forward pass."""
        return self.forward(prompts, record=sites).activations

    def token_losses(
        self, texts: str | Sequence[str] | Batch, *, edits=None, grad: bool = False, allow_noop: bool = False
    ) -> tuple[Float[Tensor, "batch pos"], Bool[Tensor, "batch pos"]]:
        """Per-token negative log-likelihood of each text under the (edited) model.

        Returns ``(nll, mask)``, both ``[batch, pos - 1]``: ``nll[b, i]`` is the loss of token ``i + 1``
        and ``mask`` is False at padding.
        """
        batch = self._as_batch(texts)
        logits = self.forward(batch, edits=edits, grad=grad, allow_noop=allow_noop).logits.float()
        targets = batch.input_ids[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none"
        ).view(targets.shape)
        mask = batch.attention_mask[:, 1:].bool() & batch.attention_mask[:, :-1].bool()
        return nll * mask, mask

    def perplexity(
        self, texts: Sequence[str], *, edits=None, batch_size: int = 8, progress: bool = False, allow_noop: bool = False
    ) -> float:
        """Perplexity of ``texts`` (token-weighted over all of them) under the (edited) model."""
        total, count = 0.0, 0
        for start in tqdm(range(0, len(texts), batch_size), desc="perplexity", disable=not progress):
            nll, mask = self.token_losses(list(texts[start : start + batch_size]), edits=edits, allow_noop=allow_noop)
            total += float(nll.sum())
            count += int(mask.sum())
        if count == 0:
            raise SteerlabError("perplexity needs texts of at least two tokens")
        return math.exp(total / count)

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
        batch = self._as_batch(prompts)
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


def _check_prefix_untouched(prefix: Prefix, suffix: Batch, edits: Sequence[Edit]) -> None:
    """A cached prefix was computed without edits: an edit reaching into it would be silently lost."""
    full = prefix.join(suffix)
    for edit in edits:
        if bool(edit.positions.mask(0, prefix.batch.prompt_len, full.prompt_len, full.n_pad).any()):
            raise SteerlabError(
                f"edit at {edit.site} with positions {edit.positions} touches the cached prefix, which was computed "
                "without edits; steer only suffix positions (e.g. LAST_PROMPT) or run without a prefix"
            )


def _messages(user: str, system: str | None) -> list[dict[str, str]]:
    return ([{"role": "system", "content": system}] if system is not None else []) + [{"role": "user", "content": user}]


def reply_lead(tokenizer: Any) -> str:
    """The whitespace a chat format writes between the opened assistant turn and the reply's first character.

    Llama-2's template renders ``[/INST] Yes``: the lead is ``" "``; ChatML, Llama-3 and Gemma templates
    start the reply right after the header (``""``); the plain ``User:/Assistant:`` format of a model
    without a template writes ``"Assistant: Yes"`` (``" "``). Read from the template itself by rendering
    a one-turn conversation with and without a reply; anything but whitespace counts as ``""``.
    """
    if not getattr(tokenizer, "chat_template", None):
        return " "
    probe, reply = _messages("x", None), "\x1f"
    try:
        opened = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            [*probe, {"role": "assistant", "content": reply}], tokenize=False, add_generation_prompt=False
        )
    except Exception:  # a template is arbitrary code; one that cannot render a reply has no known lead
        return ""
    if not full.startswith(opened) or reply not in full[len(opened) :]:
        return ""
    lead = full[len(opened) : full.index(reply, len(opened))]
    return lead if lead.isspace() else ""


def format_chat(tokenizer: Any, user: str, *, system: str | None = None, assistant_prefix: str = "") -> str:
    """A single user turn in the tokenizer's chat template, with the assistant turn opened.

    A non-empty ``assistant_prefix`` starts the reply as the template would render it, after its
    `reply_lead` (Llama-2: ``"[/INST] ("``, ChatML: ``"assistant\\n("``).

    Example:
        >>> format_chat(tok, "Is the sky blue?", assistant_prefix="(")   # doctest: +SKIP
        '<|im_start|>system\\n...<|im_end|>\\n<|im_start|>user\\nIs the sky blue?<|im_end|>\\n<|im_start|>assistant\\n('
    """
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(_messages(user, system), tokenize=False, add_generation_prompt=True)
    else:
        text = (f"{system}\n\n" if system else "") + f"User: {user}\nAssistant:"
    return text + (reply_lead(tokenizer) + assistant_prefix if assistant_prefix else "")


@contextlib.contextmanager
def removing(handles: list) -> Iterator[list]:
    """Collect PyTorch hook handles and remove them all on exit, even on error."""
    try:
        yield handles
    finally:
        for h in handles:
            h.remove()
        handles.clear()
