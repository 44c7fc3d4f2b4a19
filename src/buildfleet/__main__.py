"""Allow ``python -m buildfleet`` (and a shipped zipapp) to run the command line."""

import sys

from buildfleet.cli import main

if __name__ == "__main__":
    sys.exit(main())
