"""``python -m wscompat.gateway proxy ...``: the proxy command on its own (``--workers``
starts its workers this way)."""

import argparse
import sys

from wscompat.gateway.cli import add_commands, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="wscompat")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args()
    return run(args, sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
