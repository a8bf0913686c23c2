"""``python -m service.cli``, as the ``fanout`` script."""

import sys

from . import main

sys.exit(main())
