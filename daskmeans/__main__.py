"""``python -m daskmeans``: the same as the ``daskmeans`` command."""

import sys

from daskmeans.cli import main

if __name__ == "__main__":
    sys.exit(main())
