"""``python -m wscompat.conformance URL ...``: ``wscompat conform`` on its own."""

import argparse
import sys

from wscompat.conformance.cli import add_commands, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="wscompat")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["conform", *sys.argv[1:]])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
