"""``python -m skface.cli``: the ``skface`` command."""

import sys

from . import main

sys.exit(main())
