"""Write the AsyncAPI document for the default prefix: ``make asyncapi``.

    python scripts/asyncapi.py [PATH]   (default docs/asyncapi.json)

``tests/http/test_asyncapi.py`` fails while the checked-in file differs from
what this writes; ``make asyncapi-check`` runs the official parser on it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from service.config import Settings
from service.http import asyncapi


def main(argv: list[str]) -> int:
    path = Path(argv[0] if argv else "docs/asyncapi.json")
    path.write_bytes(asyncapi.render(asyncapi.document(Settings().stream_prefix)))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
