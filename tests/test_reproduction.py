"""REPRODUCTION.md: every claim row has a verdict of the four kinds, an MDE, and sources that exist.

Sources are written ``NAME.csv:column`` (a table under figures/ and its column) or ``NN_name.ipynb``
(a notebook whose output prints the number); this test opens each table and checks the column.
"""

import re
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
VERDICTS = ("reproduced", "not reproduced", "underpowered", "not testable on this model")
SOURCE = re.compile(r"([\w.-]+\.csv):([\w.%()\[\] -]+?)(?=[;,`|]|$)")


def claim_tables() -> list[tuple[str, list[dict[str, str]]]]:
    """``(section, rows)`` for every Markdown table whose header has a ``verdict`` column."""
    tables, section, header = [], "", None
    for line in (ROOT / "REPRODUCTION.md").read_text().splitlines():
        if line.startswith("## "):
            section, header = line[3:], None
        elif line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if header is None:
                header = [c.lower() for c in cells]
                if "verdict" in header:
                    tables.append((section, []))
                else:
                    header = []
            elif header and not set(line) <= set("|-: "):
                tables[-1][1].append(dict(zip(header, cells, strict=False)))
        else:
            header = None
    return tables


def rows() -> list[tuple[str, dict[str, str]]]:
    return [(section, row) for section, table in claim_tables() for row in table]


def test_every_section_has_a_claim_table():
    sections = {section.split(":")[0] for section, _ in claim_tables()}
    assert {"PAS", "SAAS", "CAE"} <= sections and any(s.startswith("SAE") for s in sections), sections


@pytest.mark.parametrize("section, row", rows(), ids=lambda x: x[:40] if isinstance(x, str) else "")
def test_rows_have_a_verdict_an_mde_and_sources(section, row):
    claim = next(iter(row.values()))
    verdict = row.get("verdict", "").replace("*", "").lower()
    assert any(verdict.startswith(v) for v in VERDICTS), f"{section} / {claim}: verdict {verdict!r}"
    assert row.get("mde", "").strip(), f"{section} / {claim}: no MDE column or an empty MDE"
    source = row.get("source", "")
    assert source, f"{section} / {claim}: no source"
    for name in re.findall(r"\d\d_[\w-]+\.ipynb", source):
        assert (ROOT / "notebooks" / name).exists(), f"{section} / {claim}: notebook {name} does not exist"
    for table, column in SOURCE.findall(source):
        path = ROOT / "figures" / table
        assert path.exists(), f"{section} / {claim}: {path} does not exist"
        columns = pd.read_csv(path, nrows=0).columns
        assert column.strip() in columns, f"{section} / {claim}: {table} has no column {column!r} ({list(columns)})"
    assert SOURCE.search(source) or re.search(r"\.ipynb", source), f"{section} / {claim}: source {source!r}"
