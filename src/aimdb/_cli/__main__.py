"""``python -m aimdb._cli``: same as the ``aimdb`` command."""

import sys

from . import main

sys.exit(main())
