"""Every data file listed in PROVENANCE.md loads through its steerlab loader with the listed count."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from _data_root import ROOT, needs_data

from steerlab import data as sd


@dataclass(frozen=True)
class TableRow:
    """One file listed in PROVENANCE.md: its path under the data root and its row or line count."""

    path: str
    kind: str  # "rows" (records) or "lines" (text files)
    count: int


def _single_folder(heading: str) -> str | None:
    folders = re.findall(r"`([^`]+/)`", heading)
    return folders[0] if len(folders) == 1 else None


def parse_provenance(text: str, root: Path) -> list[TableRow]:
    """The files of every per-folder table of PROVENANCE.md, with paths relative to ``root``.

    ``## `x/` `` headings name a folder; ``### `y/` `` headings name a subfolder of it, or a
    top-level folder when one with that name exists (sections that group several folders).
    """
    h2 = h3 = None
    header: list[str] | None = None
    rows: list[TableRow] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            header = None
            if line.startswith("## "):
                h2, h3 = _single_folder(line), None
            elif line.startswith("### "):
                sub = _single_folder(line)
                h3 = sub if sub and (root / sub).is_dir() else (h2 + sub if sub and h2 else None)
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = [cell.lower() for cell in cells]
            continue
        folder = h3 or h2
        if set(cells[0]) <= set("-: ") or folder is None or header[0] == "folder":
            continue
        if header[0] == "subject":
            for split in ("test", "dev"):
                count = int(cells[header.index(f"{split} rows")])
                rows.append(TableRow(f"{folder}data/mmlu/{split}/{cells[0]}_{split}.csv", "rows", count))
            continue
        path = folder + cells[0].strip("`")
        if "lines" in header:
            rows.append(TableRow(path, "lines", int(cells[header.index("lines")])))
        elif cells[header.index("rows")] in ("–", "-"):
            lines = re.search(r"text: (\d+) lines", cells[header.index("fields")])
            assert lines, f"no row count and no line count for {path}"
            rows.append(TableRow(path, "lines", int(lines.group(1))))
        else:
            rows.append(TableRow(path, "rows", int(cells[header.index("rows")].replace(",", ""))))
    return rows


TABLE = parse_provenance((ROOT / "PROVENANCE.md").read_text(encoding="utf-8"), ROOT) if ROOT else []


_ETHICS_PREFIX = re.compile(r"^(cm|deontology|justice)_")


_TQA_MC = {"truthfulqa/data/mc_task.json": "current", "truthfulqa/data/v0/mc_task.json": "v0",
           "truthfulqa/data/v1/mc_task.json": "v1"}  # fmt: skip


_TQA_CSV = {"truthfulqa/TruthfulQA.csv": "current", "truthfulqa/data/v0/TruthfulQA.csv": "v0",
            "truthfulqa/data/v1/TruthfulQA.csv": "v1"}  # fmt: skip


def records_for(rel: str) -> list:
    """Load one listed data file through the steerlab loader that covers it."""
    parts, stem = rel.split("/"), Path(rel).stem
    if rel.startswith("anthropic-evals/persona/"):
        return sd.load_persona(stem)
    if rel.startswith("anthropic-evals/advanced-ai-risk/"):
        source = {folder: name for name, folder in sd.AIRISK_SOURCES.items()}[parts[2]]
        return sd.load_advanced_ai_risk(stem, source)
    if rel.startswith("caa/datasets/"):
        kind, name, file = parts[2], parts[3], parts[4]
        if kind == "generate":
            return sd.load_caa(name, "generate")
        if kind == "raw":
            return sd.load_caa_raw(name)
        if name in ("mmlu", "truthfulqa"):
            return sd.load_caa_mc(name)
        return sd.load_caa(name, "test") if file == "test_dataset_ab.json" else sd.load_caa_open_ended(name)
    if rel.startswith("bbq/data/"):
        return sd.load_bbq(stem)
    if rel in _TQA_MC:
        return sd.load_truthfulqa_mc1(_TQA_MC[rel])
    if rel in _TQA_CSV:
        return sd.load_truthfulqa_pairs(_TQA_CSV[rel])
    if rel.startswith("mmlu/"):
        return sd.load_mmlu(stem.rsplit("_", 1)[0], parts[3])
    if rel.startswith("ethics/"):
        return sd.load_ethics(parts[1], _ETHICS_PREFIX.sub("", stem))
    if rel.startswith("arc/"):
        return sd.load_arc()
    if rel.startswith("openbookqa/"):
        return sd.load_openbookqa(stem)
    if rel.startswith("agieval/data/v1/"):
        return sd.load_agieval(stem)
    raise AssertionError(f"no steerlab loader is mapped to {rel}")


def _line_count(raw: bytes) -> int:
    return raw.count(b"\n") + (1 if raw and not raw.endswith(b"\n") else 0)


_CORPUS_STYLE = {"wikitext2/": "wikitext", "tinyshakespeare/": "paragraphs", "nltk-text/": "paragraphs"}


@needs_data
def test_provenance_tables_parsed():
    kinds = {row.kind for row in TABLE}
    assert kinds == {"rows", "lines"}
    # 123 persona + 44 advanced-ai-risk + 28 CAA + 6 BBQ + 8 TruthfulQA + 114 MMLU + 9 ETHICS
    # + 18 text + 7 AGIEval + 1 ARC + 3 OpenBookQA
    assert len(TABLE) == 361
    assert len({row.path for row in TABLE}) == len(TABLE)


@needs_data
@pytest.mark.parametrize("row", [r for r in TABLE if r.kind == "rows"], ids=lambda r: r.path)
def test_record_count_matches_provenance(row: TableRow):
    assert (ROOT / row.path).is_file(), f"{row.path} is listed in PROVENANCE.md but missing"
    if row.path == "agieval/data/few_shot_prompts.csv":
        with open(ROOT / row.path, encoding="utf-8", newline="") as f:
            assert len(list(csv.DictReader(f))) == row.count
        for task in ("lsat-ar", "lsat-lr", "lsat-rc"):  # the LSAT columns fill 3 of the 5 sample rows
            shots = sd.load_agieval_few_shot(task)
            assert len(shots) == 3 and all(shot.meta["explanation"] for shot in shots)
        return
    records = records_for(row.path)
    assert len(records) == row.count


@needs_data
@pytest.mark.parametrize("row", [r for r in TABLE if r.kind == "lines"], ids=lambda r: r.path)
def test_text_line_count_matches_provenance(row: TableRow):
    path = ROOT / row.path
    assert _line_count(path.read_bytes()) == row.count
    style = next((s for prefix, s in _CORPUS_STYLE.items() if row.path.startswith(prefix)), None)
    if style and path.suffix == ".txt":
        passages = sd.load_text_file(path, style=style)
        assert passages and all(p.strip() for p in passages)
    else:
        assert sd.read_text_file(path).strip()
