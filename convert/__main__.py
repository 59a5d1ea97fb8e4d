"""``python -m convert``: see ``convert.cli``."""

import sys

from convert.cli import main

sys.exit(main())
