"""`python -m snisd` is the `snisd` command."""

import sys

from .cli import main

sys.exit(main())
