"""Write steerlab/data/sources.json: where every file of the shared data root comes from, with its checksum.

The table below restates, folder by folder, what ``PROVENANCE.md`` of the data root says: the public
GitHub repository and commit each folder was copied from, the license, and how a local path maps onto
the path in that repository (most folders keep the source's paths; ``caa/datasets/`` is
EleutherAI/rnngineering's ``Datasets/``, ``ethics/`` is oughtinc/ice's ``ethics/``). The script hashes the
real files (sha256, size) and writes one entry per file with its raw.githubusercontent.com URL, so
``steerlab data fetch`` can rebuild the same tree anywhere and check every byte.

Usage:
    python scripts/build_data_sources.py [DATA_ROOT]   # default: ../shared/data
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from urllib.parse import quote

RAW = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"

# folder -> (title, repo, commit, license, {local prefix: source prefix}, original repository or None)
FOLDERS = {
    "anthropic-evals": ("Model-written evaluations (Perez et al. 2022): persona, advanced-ai-risk",
                        "anthropics/evals", "84fcc677e52e1902d696c32cd1a6b663e70d3993", "CC-BY-4.0", {}, None),
    "caa": ("Contrastive Activation Addition datasets (Rimsky et al. 2024)",
            "EleutherAI/rnngineering", "b18a80e3f7e3259f21e2a6574aaed3a21954aac6", "MIT",
            {"datasets/": "Datasets/"}, "nrimsky/CAA"),
    "bbq": ("BBQ bias benchmark (Parrish et al. 2022), 6 of 11 categories",
            "nyu-mll/BBQ", "bea11bd97d79217245b5871acd247b9d6eb24598", "CC-BY-4.0", {}, None),
    "truthfulqa": ("TruthfulQA (Lin et al. 2022)",
                   "sylinrl/TruthfulQA", "d71c110897f5d31c5d7f309e7bc316c152f6f031", "Apache-2.0", {}, None),
    "mmlu": ("MMLU (Hendrycks et al. 2021) test + dev, 57 subjects, re-formatted CSV",
             "HaeChan0305/MLILAB-FedLLM", "d92730e8bacd7b3a61e551e015e40588e10234b4",
             "MMLU: MIT; carrier repo: Apache-2.0", {}, "hendrycks/test"),
    "ethics": ("ETHICS (Hendrycks et al. 2021): commonsense, deontology, justice",
               "oughtinc/ice", "5449543c71c039753603ab57344147a1156bfb46",
               "ETHICS: MIT (not re-checked, see PROVENANCE.md); carrier repo: MIT", {"": "ethics/"},
               "hendrycks/ethics"),
    "tinyshakespeare": ("tiny-shakespeare text", "karpathy/char-rnn", "6f9487a6fe5b420b7ca9afb0d7c078e37c1d1b4e",
                        "public-domain text; the repository has no LICENSE file", {}, None),
    "wikitext2": ("WikiText-2 (tokenized) valid + test", "pytorch/examples", "77f55b912142e11fcfdf5b530231fb9c52f181e8",
                  "WikiText: CC BY-SA 3.0; carrier repo: BSD-3-Clause", {}, None),
    "nltk-text": ("NLTK corpora: Gutenberg selections, State of the Union, inaugural addresses",
                  "nltk/nltk", "4dc39fbf6965509f7b74316eff239bd110a03b49",
                  "public-domain texts; NLTK repo: Apache-2.0", {}, None),
    "agieval": ("AGIEval v1 (Zhong et al. 2023): LSAT tasks + few-shot prompts",
                "ruixiangcui/AGIEval", "5c77d073fda993f1652eaae3cf5d04cc5fd21d40", "MIT", {}, None),
    "arc": ("ARC-Challenge test split (Clark et al. 2018), third-party copy",
            "hthuwal/ARC-Challenge", "9a7550e7d2be1795c99efff256c283077612ab9f",
            "ARC: CC BY-SA 4.0 (AI2); carrier repo: Apache-2.0", {}, "allenai/ARC"),
    "openbookqa": ("OpenBookQA (Mihaylov et al. 2018) Main split as TSV",
                   "genggui001/opencompass", "5649a0f7e3d246ed58ffaef865f8b818cd8e0044",
                   "dataset license unconfirmed (see PROVENANCE.md); carrier repo: Apache-2.0", {},
                   "allenai/OpenBookQA"),
}  # fmt: skip

# Files that are not byte copies of a file in the source repository, so they cannot be downloaded.
NOT_DOWNLOADABLE = {"caa/LICENSE": "license text transcribed from nrimsky/CAA's LICENSE (see PROVENANCE.md)"}


def _source_path(rel_in_folder: str, prefixes: dict[str, str]) -> str:
    for local, source in sorted(prefixes.items(), key=lambda kv: -len(kv[0])):
        if rel_in_folder.startswith(local):
            return source + rel_in_folder[len(local) :]
    return rel_in_folder


def build(root: Path) -> dict:
    provenance = (root / "PROVENANCE.md").read_text(encoding="utf-8")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    if set(folders) != set(FOLDERS):
        raise SystemExit(f"data root folders {folders} differ from the table {sorted(FOLDERS)}; update FOLDERS")
    sources = {}
    for folder, (title, repo, commit, license_, prefixes, original) in FOLDERS.items():
        if commit not in provenance or repo not in provenance:
            raise SystemExit(f"{folder}: {repo}@{commit} is not named in PROVENANCE.md")
        files = {}
        for path in sorted((root / folder).rglob("*")):
            if not path.is_file():
                continue
            rel = path.relative_to(root).as_posix()
            raw = path.read_bytes()
            entry = {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
            if rel in NOT_DOWNLOADABLE:
                entry.update(url=None, note=NOT_DOWNLOADABLE[rel])
            else:
                source = _source_path(path.relative_to(root / folder).as_posix(), prefixes)
                entry["url"] = RAW.format(repo=repo, commit=commit, path=quote(source))
            files[rel] = entry
        sources[folder] = {"title": title, "repo": repo, "commit": commit, "license": license_,
                           "original": original, "files": files}  # fmt: skip
    return {
        "format": 1,
        "about": "Every file of steerlab's data root: its public source (GitHub, at a fixed commit), size and "
        "sha256. Generated by scripts/build_data_sources.py from the data root and its PROVENANCE.md.",
        "sources": sources,
    }


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    table = build(root.resolve())
    out = Path(__file__).resolve().parents[1] / "steerlab" / "data" / "sources.json"
    out.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    n = sum(len(s["files"]) for s in table["sources"].values())
    size = sum(f["size"] for s in table["sources"].values() for f in s["files"].values())
    print(f"wrote {out}: {n} files, {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
