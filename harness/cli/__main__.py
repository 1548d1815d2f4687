"""`python -m harness.cli` (what `make e2e` and the tests run)."""

import sys

from .main import main

sys.exit(main())
