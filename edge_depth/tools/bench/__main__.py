"""``python -m edge_depth.tools.bench``: the same as ``edge-depth bench``."""

import sys

from edge_depth.tools.bench import main

sys.exit(main())
