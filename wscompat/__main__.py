import sys

from wscompat.cli import main

sys.exit(main())
