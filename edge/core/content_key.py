"""A recording's content identity, the same under any name or path: its size and the sha256 of its first and
last MiB (cheap on a Pi, unique in practice).

The store keys its ledger on `name|content_key` (hootwatch.edge.store.database.file_key); the trainer drops
duplicate clips on `content_key` alone (a renamed copy is the same audio).
"""

from __future__ import annotations

import hashlib
import os

HEAD_BYTES = 1 << 20


def content_key(path: str | os.PathLike, size: int | None = None) -> str:
    """`size|sha256 of the first and last MiB`; `size` when the caller has stat'ed the file. OSError when it
    cannot be read."""
    if size is None:
        size = os.stat(path).st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(HEAD_BYTES))
        if size > 2 * HEAD_BYTES:
            f.seek(size - HEAD_BYTES)
            h.update(f.read(HEAD_BYTES))
    return f"{size}|{h.hexdigest()}"
