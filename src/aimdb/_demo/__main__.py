"""``python -m aimdb._demo``: the demo's hub, or one of its station / gateway processes."""

import sys

from . import main

sys.exit(main(sys.argv[1:]))
