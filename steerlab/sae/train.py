"""Train a sparse autoencoder (SAE) on one site of a model with SAELens, or load a pretrained one.

Two architectures, both trained with SAELens's ``SAETrainer`` on activations read through any
steerlab `Backend` from the local corpora (`steerlab.sae.corpus`, position 0 left out):

- ``"topk"``: keeps the ``k`` largest latents per token (Gao et al. 2024, "Scaling and evaluating
  sparse autoencoders"); sparsity is set directly, few latents die.
- ``"standard"``: ReLU latents with an L1 penalty on decoder-norm-weighted activations (Bricken et al.
  2023, "Towards Monosemanticity"; Cunningham et al. 2023).

Activations are read once and reused for ``epochs`` passes (reading them is the expensive part on a
CPU), and normalised to mean norm ``sqrt(d_model)`` during training (SAELens's
``expected_average_only_in``; the factor is folded back afterwards), so the L1 coefficient does not
depend on the residual norm. After training the decoder rows are folded to unit norm, so a latent's
activation is the length of its contribution to the reconstruction.

A trained SAE is saved under ``$STEERLAB_CACHE/saes/<model slug>/<key>`` (default ``~/.cache/steerlab``) with
its config and quality metrics; the same call with the same settings and model loads it (`SAE.load_from_disk`).

Example:
    >>> trained = train_sae(lm, Site(12), SAEConfig("topk", d_sae=2304, k=32, n_tokens=100_000))  # doctest: +SKIP
    >>> trained.metrics["explained_variance"]                                                  # doctest: +SKIP
    >>> sae = load_sae("gpt2-small-res-jb", "blocks.8.hook_resid_pre")   # online users only  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from steerlab.backends.base import Backend
from steerlab.errors import SteerlabError
from steerlab.sae.corpus import DEFAULT_CORPORA, CorpusActivations, collect_corpus
from steerlab.sites import Site
from steerlab.vectors import dataset_hash

logger = logging.getLogger(__name__)

ARCHITECTURES = ("topk", "standard")


@dataclass(frozen=True)
class SAEConfig:
    """Settings of one SAE training run (every field enters the cache key)."""

    architecture: Literal["topk", "standard"] = "topk"
    d_sae: int = 2304  # number of latents (4x d_model for SmolLM2-135M)
    k: int = 32  # topk: latents kept per token
    l1_coefficient: float = 5.0  # standard: weight of the L1 penalty (activations normalised to norm sqrt(d))
    n_tokens: int = 100_000  # distinct token activations read from the corpora
    epochs: float = 4.0  # passes over them: training samples = n_tokens * epochs
    batch_size: int = 4096  # tokens per SAE training step
    lr: float = 4e-4
    context: int = 128  # tokens per corpus chunk
    corpora: tuple[str, ...] = DEFAULT_CORPORA
    seed: int = 0

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise SteerlabError(f"unknown SAE architecture {self.architecture!r}; valid: {', '.join(ARCHITECTURES)}")
        for name in ("d_sae", "k", "n_tokens", "batch_size"):
            if getattr(self, name) < 1:
                raise SteerlabError(f"SAEConfig.{name} must be positive, got {getattr(self, name)}")
        if self.architecture == "topk" and self.k > self.d_sae:
            raise SteerlabError(f"k={self.k} is larger than d_sae={self.d_sae}; choose k < d_sae")
        if not all(math.isfinite(x) and x > 0 for x in (self.epochs, self.lr)):
            raise SteerlabError(f"epochs and lr must be finite and > 0, got epochs={self.epochs}, lr={self.lr}")
        if not (math.isfinite(self.l1_coefficient) and self.l1_coefficient >= 0):
            raise SteerlabError(f"l1_coefficient must be a finite number >= 0, got {self.l1_coefficient}")
        object.__setattr__(self, "corpora", tuple(self.corpora))

    @property
    def n_steps(self) -> int:
        return max(1, int(self.n_tokens * self.epochs) // self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SAEConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if k == "corpora" else v) for k, v in data.items() if k in names})


@dataclass
class TrainedSAE:
    """An SAE with where it reads (``site``), how it was made and how good it is."""

    sae: Any  # a sae_lens.SAE (inference model)
    site: Site
    config: SAEConfig | None
    metrics: dict[str, float] = field(default_factory=dict)
    folder: Path | None = None
    key: str | None = None


def sae_key(backend: Backend, site: Site, config: SAEConfig) -> str:
    """Cache key ``<model slug>/<site>_<architecture><d_sae>_<hash of every setting>``: one folder per model
    (`steerlab.models.model_slug`, as the notebooks' runs folders), so no model ever loads another's SAE."""
    from steerlab.models import model_slug

    digest = dataset_hash([config.to_dict()])[:10]
    return f"{model_slug(backend.name)}/{site}_{config.architecture}{config.d_sae}_{digest}"


def sae_cache_dir() -> Path:
    from steerlab.models import cache_dir

    return cache_dir() / "saes"


def _batches(acts: Tensor, batch_size: int, seed: int) -> Iterator[Tensor]:
    """Endless shuffled batches over ``acts`` (a fresh permutation each pass)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        for idx in torch.randperm(len(acts), generator=gen).split(batch_size):
            if len(idx) == batch_size or len(acts) < batch_size:
                yield acts[idx]


def _training_sae(config: SAEConfig, d_in: int):
    from sae_lens import StandardTrainingSAE, StandardTrainingSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig

    common = {"d_in": d_in, "d_sae": config.d_sae, "normalize_activations": "expected_average_only_in"}
    if config.architecture == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(k=config.k, **common))
    return StandardTrainingSAE(StandardTrainingSAEConfig(l1_coefficient=config.l1_coefficient, **common))


@contextlib.contextmanager
def _quiet_sae_lens() -> Iterator[None]:
    """Silence SAELens's training progress bars (it has no switch for them) within one call."""
    from functools import partial

    from sae_lens.training import activation_scaler, sae_trainer

    modules = (activation_scaler, sae_trainer)
    saved = [m.tqdm for m in modules]
    try:
        for m, bar in zip(modules, saved, strict=True):
            m.tqdm = partial(bar, disable=True)
        yield
    finally:
        for m, bar in zip(modules, saved, strict=True):
            m.tqdm = bar


def fit_sae(
    acts: Tensor, config: SAEConfig, *, hook_name: str = "", progress: bool = True,
    device: str | torch.device | None = None,
):  # fmt: skip
    """Train an SAE on a ``[n, d_model]`` activation matrix with SAELens's ``SAETrainer``; returns the
    inference SAE (normalisation folded in, unit-norm decoder rows) on ``device`` (default: where
    ``acts`` are). Batches are moved there as training draws them, so ``acts`` may stay on the CPU."""
    from sae_lens import SAE
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    if acts.dim() != 2 or len(acts) == 0:
        raise SteerlabError(f"fit_sae needs a non-empty [n, d_model] matrix, got shape {tuple(acts.shape)}")
    device = str(acts.device if device is None else torch.device(device))
    torch.manual_seed(config.seed)
    sae = _training_sae(config, acts.shape[1])
    sae.cfg.metadata.hook_name = hook_name  # an SAE trained outside the runner has no hook name otherwise
    batch = min(config.batch_size, len(acts))
    steps = max(1, int(len(acts) * config.epochs) // batch)
    cfg = SAETrainerConfig(
        total_training_samples=steps * batch, train_batch_size_samples=batch, lr=config.lr,
        lr_end=config.lr, lr_scheduler_name="constant", lr_warm_up_steps=min(20, steps // 10), device=device,
        dead_feature_window=max(1, steps // 4), feature_sampling_window=max(1, steps // 2),
        n_batches_for_norm_estimate=min(20, steps), logger=LoggingConfig(log_to_wandb=False),
    )  # fmt: skip
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=_batches(acts.float(), batch, config.seed))
    bar = tqdm(total=steps, desc="training SAE", unit="step", disable=not progress)
    step = trainer.step

    def counted(*args, **kwargs):  # SAELens's own bar moves every 100 steps only: this one moves every step
        out = step(*args, **kwargs)
        bar.update(1)
        return out

    trainer.step = counted
    with _quiet_sae_lens():
        trained = trainer.fit()
    bar.close()
    with tempfile.TemporaryDirectory() as tmp:
        trained.save_inference_model(tmp)
        return SAE.load_from_disk(tmp, fold_W_dec_norm=True, device=device)


def train_sae(
    backend: Backend,
    site: Site | str | int,
    config: SAEConfig | None = None,
    *,
    cache: bool = True,
    eval_tokens: int = 8_192,
    activations: CorpusActivations | None = None,
    progress: bool = True,
) -> TrainedSAE:
    """Train (or load from the cache) an SAE on ``site`` of ``backend``'s model and measure its quality.

    Args:
        backend: the model (either backend; activations are read through it).
        site: e.g. ``Site(12, "resid_post")``.
        config: architecture and budget (`SAEConfig`; default: TopK, 2304 latents, k=32, 100k tokens).
        cache: load from / save to ``$STEERLAB_CACHE/saes/<model slug>/<key>`` (`sae_key`).
        eval_tokens: held-out tokens (WikiText-2 valid) for the metrics of `sae_quality`; 0 skips them
            (e.g. to compare several SAEs with `quality_table`, which runs the clean model once).
        activations: corpus activations at ``site`` already read (`collect_corpus` with the config's
            corpora, context and seed); the first ``config.n_tokens`` are used, so one read can train
            several SAEs.

    Returns:
        A `TrainedSAE` whose ``metrics`` hold ``l0``, ``explained_variance``, ``loss_recovered`` (and the
        losses behind it) on held-out text, ``dead_fraction`` (latents that never fire on the training
        tokens) and ``train_seconds``.
    """
    from steerlab.sae.quality import latent_stats, sae_quality

    site = backend.site(site)
    config = config or SAEConfig()
    key = sae_key(backend, site, config)
    folder = sae_cache_dir() / key
    if cache and (folder / "steerlab_sae.json").exists():
        logger.info("loading cached SAE %s", folder)
        return load_sae(folder, device=backend.device)
    start = time.perf_counter()
    if activations is None:
        activations = collect_corpus(
            backend, site, n_tokens=config.n_tokens, corpora=config.corpora, context=config.context,
            seed=config.seed, progress=progress,
        )  # fmt: skip
    elif activations.site != site or len(activations) < config.n_tokens:
        raise SteerlabError(
            f"the activations given are {len(activations)} tokens at {activations.site}; this SAE needs "
            f"{config.n_tokens} at {site}: collect them with collect_corpus(backend, {str(site)!r}, n_tokens=...)"
        )
    acts = activations.acts[: config.n_tokens]
    read_seconds = time.perf_counter() - start
    sae = fit_sae(acts, config, hook_name=backend.hook_name(site), progress=progress, device=backend.device)
    seconds = time.perf_counter() - start
    fired = latent_stats(sae, acts)["fired"]
    del acts, activations
    metrics = {"dead_fraction": float((~fired).float().mean()), "train_seconds": seconds, "read_seconds": read_seconds}
    trained = TrainedSAE(sae, site, config, metrics, folder if cache else None, key)
    if cache:  # saved before the evaluation, so a failure there does not lose the training
        save_sae(trained, folder)
    if eval_tokens:
        metrics.update(sae_quality(backend, sae, site, n_tokens=eval_tokens, progress=progress))
        _warn_if_poor(metrics, config)
        if cache:
            save_sae(trained, folder)
    return trained


POOR_EXPLAINED_VARIANCE = 0.5
"""Below this held-out explained variance an SAE reconstructs little: `train_sae` warns."""


def _warn_if_poor(metrics: dict[str, float], config: SAEConfig) -> None:
    """Warn when the held-out explained variance is below `POOR_EXPLAINED_VARIANCE` (or undefined)."""
    ev = metrics.get("explained_variance")
    if ev is None or ev >= POOR_EXPLAINED_VARIANCE:
        return
    samples = int(config.n_tokens * config.epochs)
    logger.warning(
        "the SAE explains %s of the held-out variance (below %.1f): it reconstructs little. Likely cause: too few "
        "training tokens (%d distinct, %d samples over %g epochs for %d latents; the defaults use 100,000 tokens). "
        "Raise n_tokens (CLI --tokens) or epochs, or lower d_sae", "an undefined share" if ev != ev else f"{ev:.2f}",
        POOR_EXPLAINED_VARIANCE, config.n_tokens, samples, config.epochs, config.d_sae,
    )  # fmt: skip


def save_sae(trained: TrainedSAE, folder: str | Path) -> Path:
    """Write the SAE (SAELens format) plus ``steerlab_sae.json`` (site, config, metrics) to ``folder``."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".partial")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    trained.sae.save_model(tmp)
    meta = {
        "site": str(trained.site),
        "config": trained.config.to_dict() if trained.config else None,
        "metrics": trained.metrics,
        "key": trained.key,
    }
    (tmp / "steerlab_sae.json").write_text(json.dumps(meta, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    tmp.rename(folder)  # a killed run never leaves a half-written SAE behind
    return folder


def load_sae(
    name: str | Path, sae_id: str | None = None, *, site: Site | str | None = None,
    device: str | torch.device = "cpu",
):  # fmt: skip
    """Load an SAE: a folder written by `train_sae` / `save_sae`, a key under the SAE cache, or (with
    ``sae_id``) a pretrained SAELens release such as ``("gpt2-small-res-jb", "blocks.8.hook_resid_pre")``,
    which needs internet access to the Hugging Face hub.

    ``site`` names where the SAE reads; for a steerlab folder it is read from ``steerlab_sae.json``.
    ``device``: where the SAE lives (pass the model's, e.g. ``lm.device``; edits also work from the CPU,
    through a copy made once on the model's device).
    """
    from sae_lens import SAE

    device = str(torch.device(device))

    if sae_id is not None:
        try:
            sae = SAE.from_pretrained(str(name), sae_id, device=device)
        except Exception as exc:  # network, unknown release or id: all reach the user the same way
            raise SteerlabError(
                f"could not load the pretrained SAE {name!r} / {sae_id!r} ({exc}); pretrained SAEs need internet "
                "access to the Hugging Face hub and a release name from SAELens's pretrained_saes.yaml"
            ) from exc
        return TrainedSAE(sae, Site.parse(site) if site else Site(0), None, key=f"{name}/{sae_id}")
    folder = Path(name)
    if not folder.exists():
        folder = sae_cache_dir() / str(name)
    if not (folder / "cfg.json").exists():
        raise SteerlabError(
            f"no SAE at {name!r} (looked for cfg.json in {folder}); train one with `python -m steerlab sae train` "
            "or pass a release name and sae_id for a pretrained SAELens SAE"
        )
    sae = SAE.load_from_disk(folder, device=device)
    meta_path = folder / "steerlab_sae.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    where = site or meta.get("site")
    if where is None:
        raise SteerlabError(f"{folder} has no steerlab_sae.json naming its site; pass site='resid_post.12'")
    config = SAEConfig.from_dict(meta["config"]) if meta.get("config") else None
    return TrainedSAE(sae, Site.parse(where), config, meta.get("metrics", {}), folder, meta.get("key"))
