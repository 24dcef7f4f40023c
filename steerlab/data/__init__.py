"""Datasets as records: contrast pairs, multiple-choice items and text passages, from one data root.

Every dataset under the shared data root (see its ``PROVENANCE.md``) has a loader here that returns
a list of frozen records:

* `ContrastPair` (prompt, positive, negative): persona and advanced-AI-risk evals (Perez et al. 2022),
  CAA A/B sets (Rimsky et al. 2024), or any user file of pairs;
* `MCQItem` (question, choices, answer): BBQ, ETHICS, TruthfulQA MC1, MMLU, ARC, OpenBookQA, AGIEval;
* `TextItem` (text, label) for labelled text, and plain ``str`` passages for the text corpora.

The dataset loaders are thin wrappers over a few path-based readers (`load_persona_file`,
`load_ab_file`, `load_mcq_jsonl`, `load_text_label`, `load_pairs_jsonl`, `load_text_file`), so a user
file in one of those formats loads the same way. Malformed input raises `DataError` naming the file,
the line (1-based; for JSON arrays the 0-based item index), what is wrong and how to fix it. Loaders
never drop records silently: the one place where data is filtered (empty answer choices in the
current TruthfulQA ``mc_task.json``) logs a warning with the counts and records them in ``meta``.

Example:
    >>> from steerlab import data
    >>> pairs = data.load_persona("openness")
    >>> pairs[0].positive, pairs[0].negative
    ('Yes', 'No')
    >>> train, val, test = data.split(pairs, (0.6, 0.2, 0.2), seed=0)
    >>> len(train), len(val), len(test)
    (600, 200, 200)

Without a local data root, `fetch` downloads a dataset from its public source (``sources.json`` in the
package names each file's repository, commit, license, size and sha256) into ``$STEERLAB_CACHE/data``, and
the loaders read it there; `list_datasets` says what is where.

The package keeps one job per module: `records` (record types, `DataError`), `readers` (file formats
and the path-based readers), `root` (the data root and how loaders find files in it), `sources` (the
sources table, the cache and the mirror setting), `download` (resumable, checksummed downloads),
`fetching` (`fetch`, `list_datasets`), `behaviours`
(persona, advanced-AI-risk, CAA), `benchmarks_alignment` (BBQ, ETHICS, TruthfulQA),
`benchmarks_knowledge` (MMLU, ARC, OpenBookQA, AGIEval), `corpora` (text), `splits` and `specs`
(`load_dataset`). Import the public names from ``steerlab.data`` itself.
"""

from steerlab.data.behaviours import (
    AIRISK_SOURCES,
    BIG_FIVE,
    CAA_BEHAVIOURS,
    list_advanced_ai_risk_behaviours,
    list_persona_behaviours,
    load_advanced_ai_risk,
    load_caa,
    load_caa_mc,
    load_caa_open_ended,
    load_caa_raw,
    load_persona,
)
from steerlab.data.benchmarks_alignment import (
    BBQ_CATEGORIES,
    ETHICS_SUBSETS,
    load_bbq,
    load_ethics,
    load_truthfulqa_mc0,
    load_truthfulqa_mc1,
    load_truthfulqa_pairs,
)
from steerlab.data.benchmarks_knowledge import (
    list_mmlu_subjects,
    load_agieval,
    load_agieval_few_shot,
    load_arc,
    load_mmlu,
    load_openbookqa,
)
from steerlab.data.corpora import TEXT_CORPORA, load_text, load_text_file, read_text_file, text_files
from steerlab.data.fetching import fetch, list_datasets
from steerlab.data.readers import load_ab_file, load_mcq_jsonl, load_pairs_jsonl, load_persona_file, load_text_label
from steerlab.data.records import ContrastPair, DataError, MCQItem, TextItem
from steerlab.data.root import data_root
from steerlab.data.specs import load_dataset
from steerlab.data.splits import Split, balanced_split, sample, split, stratified_split

__all__ = [
    "AIRISK_SOURCES",
    "BBQ_CATEGORIES",
    "BIG_FIVE",
    "CAA_BEHAVIOURS",
    "ETHICS_SUBSETS",
    "TEXT_CORPORA",
    "ContrastPair",
    "DataError",
    "MCQItem",
    "Split",
    "TextItem",
    "balanced_split",
    "data_root",
    "fetch",
    "list_advanced_ai_risk_behaviours",
    "list_datasets",
    "list_mmlu_subjects",
    "list_persona_behaviours",
    "load_ab_file",
    "load_advanced_ai_risk",
    "load_agieval",
    "load_agieval_few_shot",
    "load_arc",
    "load_bbq",
    "load_caa",
    "load_caa_mc",
    "load_caa_open_ended",
    "load_caa_raw",
    "load_dataset",
    "load_ethics",
    "load_mcq_jsonl",
    "load_mmlu",
    "load_openbookqa",
    "load_pairs_jsonl",
    "load_persona",
    "load_persona_file",
    "load_text",
    "load_text_file",
    "load_text_label",
    "load_truthfulqa_mc0",
    "load_truthfulqa_mc1",
    "load_truthfulqa_pairs",
    "read_text_file",
    "sample",
    "split",
    "stratified_split",
    "text_files",
]
