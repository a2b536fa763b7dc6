"""``python -m wscompat.tools client|probe ...``: the tools on their own, as
``wscompat client`` and ``wscompat probe`` run them."""

import argparse
import sys

from wscompat.tools.cli import add_commands, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="wscompat")
    add_commands(parser.add_subparsers(dest="command", required=True))
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
