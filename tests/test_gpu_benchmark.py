"""benchmarks/gpu.py runs end to end on the tiny shape on the CPU, so it cannot rot before it meets a GPU.
Nothing here is timed: the checks are that every row is there, that generation ran its full length, and that
steerlab's extraction equals the bare HF mean difference it is timed against."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.py"
# Runs the script with nnsight invisible, as on a GPU machine where it is not installed.
WITHOUT_NNSIGHT = """
import importlib.util, runpy, sys
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "nnsight" else real(name, *a)
sys.path.insert(0, {benchmarks!r})
sys.argv = ["gpu.py", *{args!r}]
runpy.run_path({script!r}, run_name="__main__")
"""


def run(tmp_path: Path, *args: str, hide_nnsight: bool = False) -> dict:
    out = tmp_path / "gpu.json"
    argv = ["--shape", "tiny", "--device", "cpu", "--out", str(out), *args]
    if hide_nnsight:
        code = WITHOUT_NNSIGHT.format(benchmarks=str(SCRIPT.parent), args=argv, script=str(SCRIPT))
        cmd = [sys.executable, "-c", code]
    else:
        cmd = [sys.executable, str(SCRIPT), *argv]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return json.loads(out.read_text()) | {"stdout": done.stdout}


def check_full_run(result: dict, backend: str, n_tokens: int) -> None:
    names = {row["what"] for row in result["rows"]}
    assert names == {"bare", "extract", "generate-hf-b1", "generate-steered-b1", "generate-hf-b4",
                     "generate-steered-b4", "sweep-last", "sweep-all"}  # fmt: skip
    assert result["backend"] == backend and result["config"]["num_hidden_layers"] == 4
    assert result["extract_vs_bare_max_rel_error"] < 1e-4  # fp32: the same mean difference both ways
    for name, count in result["new_tokens"].items():
        assert count == n_tokens or (backend == "tl" and "steered" in name and 0 < count <= n_tokens), name
    ratios = [row["ratio"] for row in result["rows"] if "ratio" in row]
    assert len(ratios) == 4 and all(r > 0 for r in ratios)


def test_gpu_benchmark_runs_on_the_tiny_shape(tmp_path):
    result = run(tmp_path)
    check_full_run(result, "nnsight", n_tokens=8)
    assert result["versions"]["torch"] and result["machine"]["gpu"] is False


def test_gpu_benchmark_without_nnsight_still_measures_the_baselines(tmp_path):
    result = run(tmp_path, hide_nnsight=True)
    assert result["backend"] is None
    assert {row["what"] for row in result["rows"]} == {"bare", "generate-hf-b1", "generate-hf-b4"}
    assert "nnsight is not installed, so only the HF baselines run" in result["stdout"]
    assert "skipped (backend 'nnsight' unavailable)" in result["stdout"]
