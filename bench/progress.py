"""Progress lines on stderr, so stdout holds only the report."""

from __future__ import annotations

import sys
import time


def log(message: str) -> None:
    """Progress goes to stderr so stdout holds only the report."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
