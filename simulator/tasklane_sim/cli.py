"""`tasklane-sim --config sim.yaml --port 8750`: the simulated Tasklane API."""

from __future__ import annotations

import argparse
import sys

from .config import ConfigError, load_config
from .server import serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tasklane-sim", description="Serve a simulated Tasklane API (see docs/simulator.md)."
    )
    parser.add_argument("--config", required=True, help="path to a sim.yaml")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8750)
    parser.add_argument("--access-log", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        serve(config, args.host, args.port, args.access_log)
    except (ConfigError, OSError) as exc:
        print(f"tasklane-sim: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
