"""SAE-latent steering: exact oracles on tiny random models and a tiny SAE built here."""

import math

import pytest
import torch

import steerlab as sl
from steerlab.errors import SteerlabError
from steerlab.sae import (
    CorpusActivations,
    SAEConfig,
    add_latent,
    clamp_latent,
    decompose,
    latent_stats,
    load_sae,
    sparse_code,
    sparse_vector,
    top_activating,
    train_sae,
)
from steerlab.sae.corpus import record_site
from steerlab.sites import LAST_PROMPT

SITE = sl.Site(1)
PROMPTS = ["hello there, friend", "hi"]


def tiny_sae(d_in=32, d_sae=64, architecture="standard", seed=0):
    """A random SAE with unit-norm decoder rows and encoder biases that leave some latents on."""
    from sae_lens import StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    if architecture == "topk":
        sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=8))
    else:
        sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    with torch.no_grad():
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(d_sae, d_in), dim=1))
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_enc.fill_(0.1)
    return sae


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_clamp_to_current_value_is_identity(tiny, architecture):
    sae = tiny_sae(architecture=architecture)
    base = tiny.forward(PROMPTS[:1], record=[SITE])
    h = base.activations[SITE]
    z = sae.encode(h).detach()  # the same shape the edit will see, so the same rounding
    latent = int(z[0, -1].argmax())
    edit = clamp_latent(sae, SITE, latent, float(z[0, -1, latent]), positions=LAST_PROMPT)
    assert torch.equal(edit.fn(h)[:, -1], h[:, -1])
    steered = tiny.forward(PROMPTS[:1], record=[SITE], edits=[edit])
    assert torch.equal(steered.logits, tiny.forward(PROMPTS[:1]).logits)


def test_clamp_keeps_error_term(tiny):
    sae = tiny_sae()  # linear decoder: decode(z') - decode(z) = (v - z_i) W_dec[i]
    h = tiny.record(PROMPTS, [SITE])[SITE]
    z = sae.encode(h)
    out = clamp_latent(sae, SITE, 5, 3.0).fn(h)
    expected = h + (3.0 - z[..., 5:6]) * sae.W_dec[5]
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_add_latent_adds_decoder_row(tiny):
    sae = tiny_sae()
    base = tiny.record(PROMPTS, [SITE])[SITE]
    steered = tiny.forward(PROMPTS, record=[SITE], edits=[add_latent(sae, SITE, 7, 2.5)]).activations[SITE]
    torch.testing.assert_close(steered, base + 2.5 * sae.W_dec[7].detach(), rtol=0, atol=1e-6)


def test_sparse_code_recovers_a_sum_of_decoder_rows():
    sae = tiny_sae(d_in=64, d_sae=128, seed=1)
    latents, coefs = [3, 40, 99], torch.tensor([2.0, -1.5, 0.7])
    v = (sae.W_dec.detach()[latents].T @ coefs).detach()
    found, c = sparse_code(sae, v, k=3)
    assert sorted(found) == sorted(latents)
    vec = sparse_vector(sae, SITE, v, k=3)
    torch.testing.assert_close(vec[SITE], v, rtol=1e-4, atol=1e-5)
    assert sorted(vec.provenance.extra["latents"]) == sorted(latents)


def test_decompose_finds_the_latent_a_vector_is_made_of():
    sae = tiny_sae()
    df = decompose(sae, 3.0 * sae.W_dec[11].detach(), top=3)
    top = df[(df.method == "decoder_cosine") & (df["rank"] == 1)].iloc[0]
    assert top.latent == 11 and math.isclose(top.score, 1.0, rel_tol=1e-5)
    pos, neg = torch.randn(6, 32), torch.randn(6, 32)
    with_diff = decompose(sae, torch.randn(32), pos=pos, neg=neg, top=2)
    assert set(with_diff.method) == {"decoder_cosine", "encode_vector", "encode_diff"}


def test_top_activating_finds_the_strongest_token(tiny):
    sae = tiny_sae()
    tokens = tiny.tokenizer(["abcdefgh", "ijklmnop"], add_special_tokens=False, return_tensors="pt")["input_ids"]
    acts = torch.randn(14, 32) * 0.01
    acts[9] = 5 * sae.W_dec[4].detach()  # chunk 1, position 3: the letter "l"
    index = torch.stack([torch.arange(2).repeat_interleave(7), torch.arange(1, 8).repeat(2)], dim=1)
    corpus = CorpusActivations(SITE, acts, tokens, index)
    df = top_activating(sae, corpus, [4], tiny.tokenizer, n=2)
    assert df.iloc[0].token == "l" and "[[l]]" in df.iloc[0].snippet and df.iloc[0].activation > 1


def test_record_site_stops_early_and_matches_a_full_pass(tiny):
    batch = tiny.tokenize(PROMPTS)
    torch.testing.assert_close(record_site(tiny, batch, sl.Site(0)), tiny.record(batch, [sl.Site(0)])[sl.Site(0)])
    assert tiny.n_hooks() == 0


def test_bad_latents_and_configs_raise():
    sae = tiny_sae()
    with pytest.raises(SteerlabError, match="out of range"):
        add_latent(sae, SITE, 64, 1.0)
    with pytest.raises(SteerlabError, match="values"):
        clamp_latent(sae, SITE, [1, 2], [1.0])
    with pytest.raises(SteerlabError, match="architecture"):
        SAEConfig("gated")
    with pytest.raises(SteerlabError, match="no SAE"):
        load_sae("/nonexistent/sae")


def test_train_tiny_sae_reports_finite_metrics_and_caches(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path))
    cfg = SAEConfig(
        "topk", d_sae=64, k=4, n_tokens=600, epochs=2, batch_size=128, context=24, corpora=("tinyshakespeare",)
    )
    trained = train_sae(tiny, SITE, cfg, eval_tokens=88, progress=False)
    m = trained.metrics
    for name in ("l0", "explained_variance", "dead_fraction", "loss_recovered", "ce_sae"):
        assert math.isfinite(m[name]), name
    assert m["l0"] <= 4 + 1e-6 and 0 <= m["dead_fraction"] <= 1
    torch.testing.assert_close(trained.sae.W_dec.norm(dim=1), torch.ones(64))  # decoder folded to unit rows
    again = train_sae(tiny, SITE, cfg, progress=False)  # from the cache, not retrained
    assert again.folder == trained.folder and torch.equal(again.sae.W_dec, trained.sae.W_dec)
    from steerlab.models import model_slug

    assert trained.folder.parent == tmp_path / "saes" / model_slug(tiny.name)  # one folder per model
    assert again.metrics == pytest.approx(m)


def test_a_failing_evaluation_keeps_the_trained_sae(tiny, tmp_path, monkeypatch):
    """The SAE is saved before its held-out evaluation, so a crash there does not lose the training."""
    import steerlab.sae.quality

    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path))

    def crash(*args, **kwargs):
        raise RuntimeError("out of memory in the evaluation")

    monkeypatch.setattr(steerlab.sae.quality, "sae_quality", crash)
    cfg = SAEConfig("topk", d_sae=32, k=4, n_tokens=300, epochs=1, batch_size=128, context=24,
                    corpora=("tinyshakespeare",))  # fmt: skip
    with pytest.raises(RuntimeError, match="out of memory"):
        train_sae(tiny, SITE, cfg, eval_tokens=88, progress=False)
    (folder,) = (tmp_path / "saes").glob("*/*")
    kept = load_sae(folder)
    assert kept.site == SITE and "dead_fraction" in kept.metrics and "loss_recovered" not in kept.metrics


@pytest.mark.parametrize("device,dtype", [("meta", torch.float32), ("cpu", torch.float64)])
def test_sae_edits_run_on_the_activations_device_and_dtype(device, dtype):
    """A CPU, fp32 SAE steers activations elsewhere ("meta" stands in for an accelerator: mixing it with
    CPU tensors raises as CUDA does); the user's SAE stays where it was."""
    from steerlab.sae import splice

    sae = tiny_sae()
    h = torch.randn(2, 5, 32, dtype=dtype, device=device)
    for edit in (splice(sae, SITE), clamp_latent(sae, SITE, [1, 3], 2.0)):
        for _ in range(2):  # the second call reuses the copy made by the first
            out = edit.fn(h)
            assert (out.device, out.dtype, out.shape) == (h.device, h.dtype, h.shape)
    assert sae.W_dec.device.type == "cpu"


def test_standard_sae_trains_on_a_matrix():
    from steerlab.sae import fit_sae

    acts = torch.randn(512, 16)
    sae = fit_sae(acts, SAEConfig("standard", d_sae=32, n_tokens=512, epochs=2, batch_size=128), progress=False)
    stats = latent_stats(sae, acts)
    assert math.isfinite(stats["explained_variance"]) and stats["l0"] > 0


def test_clamp_latent_edit_maker_clamps_to_the_strength_along_the_row(tiny):
    from steerlab.sae import ClampLatent, latent_vector
    from steerlab.sites import ALL

    sae = tiny_sae()
    h = tiny.record(PROMPTS, [SITE])[SITE]
    row = latent_vector(sae, SITE, 5)[SITE]
    for direction, value in ((row, 3.0), (-row, -3.0), (2.0 * row, 6.0)):
        (edit,) = ClampLatent(sae, 5)(SITE, direction, 3.0, ALL)
        torch.testing.assert_close(edit.fn(h), clamp_latent(sae, SITE, 5, value).fn(h))
    with pytest.raises(SteerlabError, match="out of range"):
        ClampLatent(sae, 64)


def _comparison_inputs(tiny):
    from steerlab.data import ContrastPair
    from steerlab.sae import ClampLatent, Method, latent_vector
    from steerlab.tasks import ChoiceTask, PerplexityTask
    from steerlab.vectors import Provenance, SteeringVector

    sae = tiny_sae()
    words = ("tea", "rain", "maps", "jazz", "dogs", "snow", "math", "salt")
    answers = [("Yes", "No") if i % 2 else ("No", "Yes") for i in range(len(words))]
    pairs = [ContrastPair(f"Do you like {w}?", *a) for w, a in zip(words, answers, strict=True)]
    val, test = ChoiceTask.from_pairs(tiny, pairs[:4]), ChoiceTask.from_pairs(tiny, pairs[4:])
    dense = SteeringVector({SITE: torch.randn(32, generator=torch.Generator().manual_seed(1))},
                           Provenance(model=tiny.name, d_model=32, method="mean_diff"))  # fmt: skip
    methods = {"dense": dense, "latent": latent_vector(sae, SITE, 3),
               "clamp": Method(latent_vector(sae, SITE, 3), edit=ClampLatent(sae, 3))}  # fmt: skip
    cost = PerplexityTask(tiny, ["the cat sat on the mat", "a quick brown fox"], max_tokens=16)
    return methods, val, test, cost


def test_compare_methods_orients_chooses_tests_ranks_and_prices(tiny, tmp_path):
    import pandas as pd

    from steerlab.controls import random_like
    from steerlab.interventions import add
    from steerlab.sae import compare_methods
    from steerlab.scale import typical_norm
    from steerlab.sites import ALL
    from steerlab.sweeps import run_serial

    methods, val, test, cost = _comparison_inputs(tiny)
    scale = typical_norm(tiny, val.norm_prompts(), [SITE])
    computed = []

    def counting(store, keys, compute, **kw):
        return run_serial(store, keys, lambda key: (computed.append(key), compute(key))[1], **kw)

    kw = dict(fractions=[-0.5, -0.25, 0.0, 0.25, 0.5], controls=3, cost_task=cost, scale=scale, out=tmp_path,
              runner=counting, progress=False)  # fmt: skip
    cmp = compare_methods(tiny, methods, val, test, **kw)
    assert list(cmp.effects.method) == ["dense", "latent", "clamp"] and (cmp.effects.fraction > 0).all()
    assert (cmp.effects.k_controls == 3).all() and cmp.effects.null_lo.notna().all()
    # the unsteered cell runs once per folder (behaviour val and test, cost), not once per method
    assert computed.count("base") == 6
    # the band beside every method is the same random directions: f * T along each, whatever the method's norm
    f = float(cmp.effects.fraction.iloc[0])
    rnd = cmp.results[(cmp.results.direction == "random:0") & (cmp.results.fraction == f)
                      & (cmp.results.metric == "p_behaviour")]  # fmt: skip
    r = random_like(cmp.vectors["dense"].select([SITE]), 3, 0)[0][SITE]
    expected = test.evaluate([add(SITE, r / r.norm(), f * scale[SITE], ALL)]).query("metric == 'p_behaviour'")
    assert rnd.value.tolist() == pytest.approx(expected.value.tolist(), abs=1e-6)
    # the ranking: dense minus each method, per item, Holm over the two
    assert list(cmp.versus.method) == ["latent", "clamp"]
    assert (cmp.versus.p_holm >= cmp.versus.p - 1e-12).all()
    eff = cmp.effects.set_index("method").effect
    assert cmp.versus.difference.tolist() == pytest.approx([eff["dense"] - eff["latent"], eff["dense"] - eff["clamp"]])
    assert set(cmp.cost.method) == {"dense", "latent", "clamp"} and (cmp.cost.direction != "vector").any()
    assert set(cmp.labels.label) == {"Yes", "No"}
    # a rerun on the same folder computes nothing and gives the same numbers
    computed.clear()
    again = compare_methods(tiny, methods, val, test, **kw)
    assert computed == []
    pd.testing.assert_frame_equal(again.effects, cmp.effects)


def test_compare_methods_refuses_a_bad_baseline(tiny):
    from steerlab.sae import compare_methods

    methods, val, test, _ = _comparison_inputs(tiny)
    with pytest.raises(SteerlabError, match="additive"):
        compare_methods(tiny, methods, val, test, fractions=[-0.25, 0.25], baseline="clamp")
    with pytest.raises(SteerlabError, match="not among"):
        compare_methods(tiny, methods, val, test, fractions=[-0.25, 0.25], baseline="caa")
    with pytest.raises(SteerlabError, match="at least two"):
        compare_methods(tiny, {"dense": methods["dense"]}, val, test, fractions=[-0.25, 0.25])


def test_sae_plots_draw_from_tidy_frames():
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from steerlab.plotting import plot_cost_dose_response, plot_latent_scores, plot_method_effects

    df = decompose(tiny_sae(), torch.randn(32), pos=torch.randn(4, 32), neg=torch.randn(4, 32), top=3)
    ax = plot_latent_scores(df)
    assert ax.get_ylabel() == "score / max |score|"
    expected = df.assign(rel=df.score / df.groupby("method").score.transform(lambda s: s.abs().max()))
    expected = expected.sort_values(["method", "rank"])  # bars and their labels in the same order
    assert [t.get_text() for t in ax.texts] == expected.latent.astype(str).tolist()
    assert [round(float(p.get_height()), 5) for p in ax.patches][: len(expected)] == expected.rel.round(5).tolist()
    effects = pd.DataFrame({"method": ["a", "b"], "fraction": [0.25, 0.1], "effect": [0.1, -0.02],
                            "lo": [0.05, -0.06], "hi": [0.15, 0.02], "null_lo": [-0.03, -0.01],
                            "null_hi": [0.04, 0.02]})  # fmt: skip
    labels = pd.DataFrame({"method": ["a", "a", "b", "b"], "label": ["Yes", "No"] * 2, "effect": [0.2, 0.0, 0, -0.04]})
    ax = plot_method_effects(effects, labels)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    bars = [p for p in ax.patches]  # the random bands, one per method
    assert [(round(p.get_x(), 3), round(p.get_width(), 3)) for p in bars] == [(-0.03, 0.07), (-0.01, 0.03)]
    rows = [{"method": m, "direction": "vector", "fraction": f, "metric": "perplexity", "value": 20 + 5 * abs(f)}
            for m in ("a", "b") for f in (-1.0, 0.0, 1.0)]  # fmt: skip
    rows += [{"method": "a", "direction": f"random:{i}", "fraction": 1.0, "metric": "perplexity", "value": 30 + i}
             for i in range(3)]  # fmt: skip
    ax = plot_cost_dose_response(pd.DataFrame(rows))
    assert ax.get_yscale() == "log" and len(ax.collections) == 1  # the random band
    assert [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"] == [20.0]
    with pytest.raises(SteerlabError, match="no rows"):
        plot_cost_dose_response(pd.DataFrame(rows), metric="nll")


def _pairs():
    from steerlab.data import ContrastPair

    return [ContrastPair(f"Do you like {w}?", " Yes", " No") for w in ("tea", "rain", "maps", "jazz")]


def test_yapo_with_identity_decoder_equals_bipo(tiny):
    from steerlab.methods.bipo import train_bipo
    from steerlab.sae.yapo import train_yapo

    sae = tiny_sae(d_in=32, d_sae=32)
    with torch.no_grad():
        sae.W_dec.copy_(torch.eye(32))
    kw = {"epochs": 2, "batch_size": 2, "lr": 0.05, "seed": 3}
    v_bipo, _ = train_bipo(tiny, _pairs(), SITE, progress=False, **kw)
    code, v, log = train_yapo(tiny, sae, _pairs(), SITE, k=32, progress=False, **kw)
    torch.testing.assert_close(v, v_bipo, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(code, v_bipo, rtol=1e-5, atol=1e-6)
    assert v.norm() > 0 and len(log) == 4


def test_yapo_stops_and_reports_convergence_as_bipo_does(tiny):
    """The same convergence check ends both runs at the same step, with the same verdict."""
    from steerlab.methods.bipo import train_bipo
    from steerlab.sae.yapo import train_yapo

    sae = tiny_sae(d_in=32, d_sae=32)
    with torch.no_grad():
        sae.W_dec.copy_(torch.eye(32))
    kw = {"epochs": 30, "batch_size": 2, "lr": 0.2, "seed": 0, "tol": 0.05}
    v_bipo, bipo_log = train_bipo(tiny, _pairs(), SITE, progress=False, **kw)
    _, v, log = train_yapo(tiny, sae, _pairs(), SITE, k=32, progress=False, **kw)
    assert len(log) == len(bipo_log) < 60 and log.attrs["converged"] and bipo_log.attrs["converged"]
    assert log.attrs["convergence"]["reason"] == bipo_log.attrs["convergence"]["reason"]
    torch.testing.assert_close(v, v_bipo, rtol=1e-4, atol=1e-5)
    _, _, short = train_yapo(tiny, sae, _pairs(), SITE, k=4, max_steps=3, progress=False)
    assert len(short) == 3 and not short.attrs["converged"] and "too few steps" in short.attrs["convergence"]["reason"]


def test_yapo_code_has_at_most_k_latents(tiny):
    from steerlab.sae.yapo import train_yapo

    sae = tiny_sae()
    code, v, log = train_yapo(tiny, sae, _pairs(), SITE, k=5, epochs=2, batch_size=2, progress=False)
    assert int((code != 0).sum()) == 5 and (log.nonzero <= 5).all()
    torch.testing.assert_close(v, code @ sae.W_dec.detach())
    with pytest.raises(SteerlabError, match="k <= d_sae"):
        train_yapo(tiny, sae, _pairs(), SITE, k=65)


def test_cli_sae_train_on_the_tiny_model(tiny_folder, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from steerlab.cli import app

    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path))
    args = ["sae", "train", "--model", str(tiny_folder), "--layer", "1", "--tokens", "400", "--d-sae", "64",
            "--k", "4", "--epochs", "1", "--eval-tokens", "64", "--threads", "1"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output[result.output.index("{") :])
    assert math.isfinite(metrics["explained_variance"]) and metrics["l0"] <= 4
    (folder,) = (tmp_path / "saes").glob("*/*")
    assert folder.parent.name.startswith("tiny") and (folder / "steerlab_sae.json").exists()
    bad = CliRunner().invoke(app, ["sae", "train", "--model", str(tiny_folder), "--layer", "7"])
    assert bad.exit_code == 2 and "out of range" in bad.output
