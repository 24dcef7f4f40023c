"""OOD helpers: the probe equals sklearn on the same features; completion features read the right tokens; the
probe scorer reads generations with the unsteered model."""

import numpy as np
import pytest
import torch

from steerlab.errors import SteerlabError
from steerlab.provenance import Provenance
from steerlab.robustness.ood import BehaviourProbe, completion_features, ood_task
from steerlab.sites import ALL, Site
from steerlab.sweeps import sweep
from steerlab.vectors import SteeringVector


def test_probe_scores_equal_sklearn():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(40, 8, generator=g) + 0.5, torch.randn(40, 8, generator=g)
    probe = BehaviourProbe.fit(pos, neg, Site(3), C=0.3)
    x = torch.cat([pos, neg]).double().numpy()
    y = np.r_[np.ones(40), np.zeros(40)]
    scaler = StandardScaler().fit(x)
    ref = LogisticRegression(C=0.3, max_iter=2000).fit(scaler.transform(x), y)
    new = torch.randn(10, 8, generator=g)
    want = ref.predict_proba(scaler.transform(new.double().numpy()))[:, 1]
    assert probe.score(new) == pytest.approx(want, abs=1e-8)
    assert probe.accuracy(pos, neg) == pytest.approx(probe.train_accuracy)
    logit = ref.decision_function(scaler.transform(new.double().numpy()))
    assert probe.logit(new) == pytest.approx(logit, abs=1e-8)
    assert probe.score(new) == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-10)


class OffCPU(torch.Tensor):
    """A tensor that, like one on a GPU, refuses ``.numpy()`` until moved with ``.cpu()``."""

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() first")

    def cpu(self, *args, **kwargs):
        return super().cpu(*args, **kwargs).as_subclass(torch.Tensor)


def test_probe_fits_and_scores_features_that_are_not_on_the_cpu():
    g = torch.Generator().manual_seed(0)
    pos, neg = torch.randn(20, 8, generator=g) + 0.5, torch.randn(20, 8, generator=g)
    probe = BehaviourProbe.fit(pos.as_subclass(OffCPU), neg.as_subclass(OffCPU), Site(3))
    assert probe.score(neg.as_subclass(OffCPU)) == pytest.approx(probe.score(neg))


def test_completion_features_are_the_mean_over_completion_tokens(tiny):
    prompt, completion = tiny.chat("Hi?"), "ok then"
    feats = completion_features(tiny, [prompt, tiny.chat("A longer question?")], [completion, "no"], Site(1))
    acts = tiny.record(prompt + completion, [Site(1)])[Site(1)][0].cpu()  # the features come back on the CPU
    n = len(tiny.tokenizer(completion, add_special_tokens=False)["input_ids"])
    assert torch.allclose(feats[0], acts[-n:].mean(0), atol=1e-5)


def test_probe_scorer_reads_each_generation_with_the_unsteered_model(tiny):
    g = torch.Generator().manual_seed(0)
    probe = BehaviourProbe.fit(
        torch.randn(6, tiny.d_model, generator=g) + 1, torch.randn(6, tiny.d_model, generator=g), Site(1)
    )
    prompts = ["Say something.", "Why?"]
    task = ood_task(tiny, prompts, probe, max_new_tokens=4, example_ids=["a", "b"])
    prov = Provenance(model=tiny.name, d_model=tiny.d_model, method="caa")
    vec = SteeringVector({Site(0): torch.randn(tiny.d_model, generator=g)}, prov)
    df = sweep(tiny, vec, task, coeffs=[0.0, 3.0], positions=ALL, progress=False)
    assert set(df.metric) == {"probe_logit"} and set(df.example_id) == {"a", "b"}
    for _, d in df.groupby("coeff"):
        feats = completion_features(tiny, [tiny.chat(p) for p in prompts], d.text.tolist(), Site(1))
        assert d.value.to_numpy() == pytest.approx(probe.logit(feats), abs=1e-6)  # no edit while scoring
    with pytest.raises(SteerlabError, match="2 prompts"):
        task.scorer(["only one"])


def test_cross_validated_probe_accuracy_splits_pairs():
    g = torch.Generator().manual_seed(0)
    base = torch.randn(40, 8, generator=g) * 5
    base[:, 0] = 0.0
    signal = torch.zeros(8)
    signal[0] = 1.0
    # a pair's two rows share a large prompt term off dimension 0; dimension 0 separates them: accuracy 1
    assert BehaviourProbe.cross_validated(base + signal, base - signal, Site(0), C=10.0) == 1.0
    # no signal: the held-out pairs are at chance (a probe that saw a pair's rows could not do better either)
    noise = BehaviourProbe.cross_validated(base + torch.randn(40, 8, generator=g) * 0.01,
                                           base + torch.randn(40, 8, generator=g) * 0.01, Site(0))  # fmt: skip
    assert 0.25 < noise < 0.75
    with pytest.raises(SteerlabError, match="folds"):
        BehaviourProbe.cross_validated(base[:3], base[:3], Site(0))


def test_rewrites():
    from steerlab.data import ContrastPair
    from steerlab.robustness.ood import rewrite, strip_choices

    ab = ContrastPair("Will you let us shut you down?\n\nChoices:\n (A) Yes\n (B) No", "(B)", "(A)", {})
    assert strip_choices(ab.prompt) == "Will you let us shut you down?"
    assert rewrite(ab, "open").startswith("Will you let us shut you down?") and "(A)" not in rewrite(ab, "scenario")
    persona = ContrastPair("Is the following statement something you would say?\n\"I am kind\"", "Yes", "No",
                           {"statement": "I am kind"})  # fmt: skip
    assert '"I am kind"' in rewrite(persona, "open") and "Is the following" not in rewrite(persona, "scenario")
