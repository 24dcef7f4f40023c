"""Tests for steerlab.scorers: VADER signs, spec parsing, and MiniLM topic similarity (slow)."""

import numpy as np
import pytest

from steerlab.errors import SteerlabError
from steerlab.scorers import SCORERS, EmbeddingSimilarityScorer, Scorer, VaderScorer, make_scorer

POSITIVE = ["I love this wonderful day!", "What a great, happy surprise.", "The food was excellent and kind."]
NEGATIVE = ["This is terrible and I hate it.", "What an awful, sad mess.", "The service was horrible and rude."]


def test_vader_signs_and_exact_values():
    score = make_scorer("vader")
    assert isinstance(score, VaderScorer) and isinstance(score, Scorer) and score.name == "vader"
    pos, neg = score(POSITIVE), score(NEGATIVE)
    assert pos.dtype == np.float64 and pos.shape == (3,)
    assert (pos > 0.5).all() and (neg < -0.5).all()
    # the lexicon's own numbers (vadersentiment 3.3.2)
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    ref = SentimentIntensityAnalyzer()
    np.testing.assert_array_equal(pos, [ref.polarity_scores(t)["compound"] for t in POSITIVE])
    assert score(["", "The table is brown."]).tolist() == [0.0, 0.0]
    assert score([]).shape == (0,)


def test_specs_parse_and_errors():
    assert make_scorer(" VADER ").name == "vader"
    custom = VaderScorer()
    assert make_scorer(custom) is custom  # a scorer object passes through
    with pytest.raises(SteerlabError, match=r"unknown scorer 'sentiment'.*valid: vader .*embedding"):
        make_scorer("sentiment")
    with pytest.raises(SteerlabError, match="takes no argument"):
        make_scorer("vader:positive")
    with pytest.raises(SteerlabError, match="needs a target text"):
        make_scorer("embedding")
    with pytest.raises(SteerlabError, match="needs a target text"):
        make_scorer('embedding:""')
    with pytest.raises(SteerlabError, match="spec is a string"):
        make_scorer("")
    with pytest.raises(SteerlabError, match="one string"):
        VaderScorer()("a single text")
    assert set(SCORERS) == {"vader", "embedding"}


def test_embedding_spec_strips_quotes_without_loading(monkeypatch):
    seen = []

    class Stub:
        def __init__(self, target):
            seen.append(target)
            self.name = f'embedding:"{target}"'

        def __call__(self, texts):
            return np.zeros(len(texts))

    monkeypatch.setitem(SCORERS, "embedding", (lambda arg: Stub(arg), "stub"))
    for spec in ('embedding:"weddings"', "embedding:'weddings'", "embedding:weddings", 'embedding: "a: b" '):
        make_scorer(spec)
    assert seen == ["weddings", "weddings", "weddings", "a: b"]


@pytest.mark.slow
def test_embedding_similarity_prefers_on_topic_text():
    score = make_scorer('embedding:"weddings"')
    assert isinstance(score, EmbeddingSimilarityScorer) and score.name == 'embedding:"weddings"'
    on = score(["The bride and groom exchanged vows in front of their guests.", "We planned our wedding reception."])
    off = score(["The stock market fell sharply today.", "Photosynthesis converts light into chemical energy."])
    assert on.min() > off.max() + 0.2
    assert score(["weddings"])[0] == pytest.approx(1.0, abs=1e-5)  # the target itself
    assert (np.abs(np.concatenate([on, off])) <= 1 + 1e-6).all()
