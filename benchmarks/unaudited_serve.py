"""`eventlog serve` without the audit record of each publish: the baseline of the audit's cost.

Everything else is the product's server, started the same way; only the
record that `POST /events` hands to the log with its events is left out.

    python benchmarks/unaudited_serve.py serve --no-auth --data-dir DIR --port 8301
"""

from __future__ import annotations

from typing import Any

import feeds.publish
from feeds.cli import main


def _no_record(*arguments: Any, **fields: Any) -> None:
    return None


if __name__ == "__main__":
    feeds.publish.audit_record = _no_record  # type: ignore[assignment]
    main()
