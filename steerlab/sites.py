"""The value types every module speaks in: sites, token positions, edits, token batches, cached prefixes,
and what a forward pass returns (logits, activations, the positions each edit touched).

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

These are plain values (no model, no backend): `steerlab.backends` runs them, and every module
above it builds or reads them without importing a backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from steerlab.errors import SteerlabError

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
    """What a backend's forward pass returns: logits, activations at the recorded sites, and (for a call
    with edits) the token positions each edit touched."""

    logits: Float[Tensor, "batch pos vocab"]
    activations: dict[Site, Float[Tensor, "batch pos d_model"]] = field(default_factory=dict)
    edit_counts: EditCounts | None = None  # token positions each edit touched (see `EditCounts`)
