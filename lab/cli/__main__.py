"""`python -m lab.cli` is `lab` (as `python -m lab` is)."""

import sys

from lab.cli import main

sys.exit(main())
