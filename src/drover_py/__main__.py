"""``python -m drover_py``: the ``drover-py`` command line."""

from __future__ import annotations

import sys

from ._entry import main

sys.exit(main())
