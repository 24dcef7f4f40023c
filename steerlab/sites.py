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


POSITION_KINDS: tuple[str, ...] = ("all", "prompt", "generated", "last_prompt", "from", "span")
"""Position kinds a backend can apply directly."""
TEMPLATE_KINDS: tuple[str, ...] = ("after_instruction", "system", "user", "assistant")
"""Position kinds defined by the chat template: resolved against the prompts first (`steerlab.positions`)."""


@dataclass(frozen=True)
class Positions:
    """Which token positions an edit touches.

    Kinds a backend applies directly:

    - ``all``; ``prompt`` (prompt tokens only); ``last_prompt`` (the last prompt token, where an answer
      is predicted);
    - ``generated``: generated tokens ``start <= g < stop``, ``g`` counted from the first generated token
      (``stop=None``: all of them; the default is every generated token);
    - ``from``: prompt token ``start`` onward plus every generated token; a ``start >= 0`` counts within
      each prompt, so left padding does not shift it; a negative ``start`` counts back from the prompt's end;
    - ``span``: prompt positions ``[start, stop)``, each bound counted like ``from``'s start (``>= 0``: from
      the row's first real token; ``< 0``: back from the prompt's end; ``stop=None``: the prompt's end),
      plus every generated token if ``generated``.

    Template kinds (``after_instruction``, ``system``, ``user``, ``assistant``) name spans of the chat
    template; `steerlab.positions.resolve_positions` (or a task's ``resolve_positions``) turns them into a
    ``span`` for given prompts. ``after_instruction`` is the assistant turn from its header on plus every
    generated token (CAA's steering positions); ``assistant`` is the same without generated tokens.

    Example:
        >>> Positions.from_index(-3)   # the last three prompt tokens and everything generated
        Positions('from', start=-3)
        >>> Positions.span(2, -4).tail is None, Positions.span(-4, generated=True).tail
        (True, 4)
    """

    kind: str = "all"
    start: int = 0
    stop: int | None = None
    generated: bool = False

    def __post_init__(self) -> None:
        valid = POSITION_KINDS + TEMPLATE_KINDS
        if self.kind not in valid:
            raise SteerlabError(f"unknown positions kind {self.kind!r}; valid: {', '.join(valid)}")
        for name in ("start", "stop"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise SteerlabError(f"Positions.{name} must be an int, got {value!r}")
        if self.kind == "generated" and (self.start < 0 or (self.stop is not None and self.stop <= self.start)):
            raise SteerlabError(
                f"a generation window needs 0 <= start < stop, got start={self.start}, stop={self.stop}; "
                "count generated tokens from 0 (the first generated token)"
            )

    @classmethod
    def from_index(cls, start: int) -> Positions:
        return cls("from", start)

    @classmethod
    def span(cls, start: int = 0, stop: int | None = None, *, generated: bool = False) -> Positions:
        """Prompt positions ``[start, stop)`` (see the class docstring), plus generated tokens if asked."""
        return cls("span", start, stop, generated)

    @classmethod
    def window(cls, start: int = 0, stop: int | None = None) -> Positions:
        """Generated tokens ``start <= g < stop``, counted from the first generated token."""
        return cls("generated", start, stop)

    @property
    def needs_template(self) -> bool:
        """True for template kinds, which must be resolved against prompts before use."""
        return self.kind in TEMPLATE_KINDS

    @property
    def in_tail(self) -> bool:
        """True if these positions touch only the prompt's last tokens (and generated ones), so a task may
        reuse the prompt before them; template kinds ``after_instruction`` and ``assistant`` qualify before
        they are resolved (their length is known once they are)."""
        return self.tail is not None or self.kind in ("after_instruction", "assistant")

    @property
    def tail(self) -> int | None:
        """How many of the prompt's last tokens these positions can touch (0: none), or None if they may
        touch earlier ones. A task can run everything before the tail once, unedited, and reuse it."""
        if self.kind == "generated":
            return 0
        if self.kind == "last_prompt":
            return 1
        if self.kind in ("from", "span") and self.start < 0:
            return -self.start
        return None

    def __repr__(self) -> str:
        parts = [repr(self.kind)]
        if self.kind in ("from", "span", "generated") and (self.start or self.kind != "generated"):
            parts.append(f"start={self.start}")
        if self.stop is not None:
            parts.append(f"stop={self.stop}")
        if self.generated:
            parts.append("generated=True")
        return f"Positions({', '.join(parts)})"

    def __str__(self) -> str:
        if self.kind not in ("from", "span", "generated"):
            return self.kind
        stop = "" if self.stop is None else str(self.stop)
        if self.kind == "generated":
            return f"generated[{self.start}:{stop}]"
        extra = "+generated" if self.generated or self.kind == "from" else ""
        return f"prompt[{self.start}:{stop}]{extra}"

    def _intervals(self, prompt_len: int) -> list[tuple[float, float]] | None:
        """The absolute positions covered, as half-open intervals, if they do not depend on the padding."""
        inf = float("inf")
        generated = [(prompt_len, inf)] if self.kind in ("all", "from") or self.generated else []
        if self.kind == "all":
            return [(0, inf)]
        if self.kind == "prompt":
            return [(0, prompt_len)]
        if self.kind == "last_prompt":
            return [(prompt_len - 1, prompt_len)]
        if self.kind == "generated":
            return [(prompt_len + self.start, inf if self.stop is None else prompt_len + self.stop)]
        if self.start >= 0 or (self.stop is not None and self.stop >= 0):
            return None  # counted from each row's first token
        stop = prompt_len if self.kind == "from" or self.stop is None else prompt_len + self.stop
        return [(prompt_len + self.start, stop), *generated]

    def cover(self, offset: int, length: int, prompt_len: int) -> str | None:
        """``"all"`` or ``"none"`` when these positions cover every or no position of ``[offset, offset + length)``
        in every row, whatever the padding; None when it takes a mask. Python ints only, so a backend can decide
        without a device sync (a decode step is all or nothing)."""
        if self.needs_template:
            self.mask(offset, length, prompt_len, torch.zeros(1, dtype=torch.long))  # raises the clear error
        end = offset + length
        intervals = self._intervals(prompt_len)
        if intervals is None:
            if offset < prompt_len:
                return None
            generated = self.kind == "from" or self.generated
            intervals = [(prompt_len, float("inf"))] if generated else []
        merged: list[list[float]] = []
        for lo, hi in sorted(intervals):
            if merged and lo <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        if any(lo <= offset and end <= hi for lo, hi in merged):
            return "all"
        if all(end <= lo or hi <= offset for lo, hi in merged):
            return "none"
        return None

    def mask(
        self, offset: int, length: int, prompt_len: int, n_pad: Int[Tensor, " batch"]
    ) -> Bool[Tensor, "batch pos"]:
        """Boolean mask over a slice ``[offset, offset + length)`` of absolute positions."""
        if self.needs_template:
            raise SteerlabError(
                f"positions {self.kind!r} are defined by the chat template; resolve them against the prompts first "
                "(steerlab.positions.resolve_positions, or pass them to sweep/a task, which resolves them)"
            )
        pos = torch.arange(offset, offset + length, device=n_pad.device).unsqueeze(0)  # [1, pos]
        pos = pos.expand(n_pad.shape[0], -1)
        if self.kind == "all":
            return torch.ones_like(pos, dtype=torch.bool)
        if self.kind == "prompt":
            return pos < prompt_len
        if self.kind == "generated":
            inside = pos >= prompt_len + self.start
            return inside if self.stop is None else inside & (pos < prompt_len + self.stop)
        if self.kind == "last_prompt":
            return pos == prompt_len - 1

        def bound(b: int):  # an absolute position per row ([batch, 1]) or for all rows (int)
            return n_pad.unsqueeze(1) + b if b >= 0 else prompt_len + b

        if self.kind == "from":
            return pos >= bound(self.start)
        inside = (pos >= bound(self.start)) & (pos < (prompt_len if self.stop is None else bound(self.stop)))
        return inside | (pos >= prompt_len) if self.generated else inside


ALL = Positions("all")
PROMPT = Positions("prompt")
GENERATED = Positions("generated")
LAST_PROMPT = Positions("last_prompt")
AFTER_INSTRUCTION = Positions("after_instruction")
SYSTEM = Positions("system")
USER = Positions("user")
ASSISTANT = Positions("assistant")


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

    ``activations`` holds the prefix's activations at the sites recorded when it was computed. ``blocks`` is
    how many decoder blocks it ran (None: all of them): a prefix computed to read early layers only
    (``Backend.prefix(..., stop_at=site)``) caches keys and values of those blocks alone.
    """

    batch: Batch
    cache: Any
    activations: dict[Site, Tensor] = field(default_factory=dict)
    blocks: int | None = None

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
    with edits) the token positions each edit touched. ``logits`` is None for a call that asked for none
    (``logits=False``: the pass stopped after the deepest recorded site) and covers the last ``k`` positions
    for ``logits=k``."""

    logits: Float[Tensor, "batch pos vocab"] | None
    activations: dict[Site, Float[Tensor, "batch pos d_model"]] = field(default_factory=dict)
    edit_counts: EditCounts | None = None  # token positions each edit touched (see `EditCounts`)
