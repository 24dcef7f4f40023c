"""The ``steerlab`` command line: list and try models, sweep a steering vector over layers and strengths,
run the paper pipelines and the numbered notebooks.

    steerlab models [--load NAME --backend tl|nnsight]
    steerlab sweep --data evals.jsonl --format persona --method caa --layers 8-16 --coeffs=-8,0,8 --out runs/x
    steerlab pas --data mcq.jsonl --variant ipasa --out runs/pas
    steerlab saas --data pairs.jsonl --behavior "..." --agent embedding --out runs/saas
    steerlab sae train --layer 12
    steerlab notebooks [PATHS...] --out figures [--smoke] [--model NAME --device cuda --dtype bfloat16]
    steerlab data list | fetch NAME... | fetch --all

One module per command (`models`, `sweep`, `pas`, `saas`, `sae`, `notebooks`, `data`), each registering on the
`app` of `steerlab.cli.main`; the commands keep options, argument checks and printing, the work is in
the library. torch, the models and the data readers are imported inside the commands, so
``steerlab --help`` is fast. Bad input (a malformed data file, an unknown layer) ends with a one-line
message and exit code 2.
"""

from steerlab.cli.main import app, parse_coeffs, parse_layers

# Each module registers its commands on `app`; --help lists them in this order.
# isort: off
from steerlab.cli import models, sweep, notebooks, pas, saas, sae, data  # noqa: F401
# isort: on

__all__ = ["app", "parse_coeffs", "parse_layers"]
