"""``python -m steerlab``: the command line (see `steerlab.cli`)."""

from steerlab.cli import app

if __name__ == "__main__":
    app(prog_name="steerlab")
