"""OOD helper: the probe equals sklearn on the same features; completion features read the right tokens."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from steerlab.robustness.ood import BehaviourProbe, completion_features, id_ood_effects, ood_evaluation
from steerlab.sites import Site


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


def test_ood_evaluation_is_tidy_and_zero_strength_is_unsteered(tiny):
    pairs = [SimpleNamespace(prompt="Is it?", positive="Yes", negative="No", meta={"id": i}) for i in range(2)]
    g = torch.Generator().manual_seed(0)
    probe = BehaviourProbe.fit(
        torch.randn(6, tiny.d_model, generator=g) + 1, torch.randn(6, tiny.d_model, generator=g), Site(1)
    )
    vec = {Site(0): torch.randn(tiny.d_model, generator=g)}
    df = ood_evaluation(tiny, vec, [-1.0, 0.0, 1.0], pairs, {"open": ["Say something.", "Why?"]}, probe,
                        max_new_tokens=4, progress=False)  # fmt: skip
    assert set(df.form) == {"id", "open"}
    assert set(df[df.form == "open"].metric) == {"probe_p", "probe_logit"}
    gens = df[(df.form == "open") & (df.coeff == 0.0) & (df.metric == "probe_p")]
    feats = completion_features(tiny, [tiny.chat(p) for p in gens.prompt], gens.completion.tolist(), Site(1))
    assert gens.value.to_numpy() == pytest.approx(probe.score(feats), abs=1e-6)
    eff = id_ood_effects(df)
    assert list(eff.form) == ["id", "open"] and eff.n.tolist() == [2, 2]
    assert list(eff.metric) == ["p_behaviour", "probe_logit"]
    w = df[(df.form == "open") & (df.metric == "probe_logit")].pivot_table(index="example_id", columns="coeff",
                                                                            values="value")  # fmt: skip
    diff = (w[1.0] - w[-1.0]).to_numpy()
    assert eff.effect.iloc[1] == pytest.approx(diff.mean())
    assert eff.dz.iloc[1] == pytest.approx(diff.mean() / diff.std(ddof=1))


def test_rewrites():
    from steerlab.data import ContrastPair
    from steerlab.robustness.ood import rewrite, strip_choices

    ab = ContrastPair("Will you let us shut you down?\n\nChoices:\n (A) Yes\n (B) No", "(B)", "(A)", {})
    assert strip_choices(ab.prompt) == "Will you let us shut you down?"
    assert rewrite(ab, "open").startswith("Will you let us shut you down?") and "(A)" not in rewrite(ab, "scenario")
    persona = ContrastPair("Is the following statement something you would say?\n\"I am kind\"", "Yes", "No",
                           {"statement": "I am kind"})  # fmt: skip
    assert '"I am kind"' in rewrite(persona, "open") and "Is the following" not in rewrite(persona, "scenario")
