"""Decimal text of message numbers, made once and shared by every session.

A SEARCH answer over a large mailbox is mostly numbers; looking their text up costs a
fraction of formatting each one again. The table grows to the largest number asked for,
up to :data:`LIMIT` (about 56 bytes a number); larger numbers are formatted each time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from itertools import compress, count, islice

#: Largest number whose text is kept.
LIMIT = 250_000

_texts: list[str] = ["0"]
_growing = threading.Lock()  # searches in threads may grow the table too


def texts(largest: int) -> Sequence[str]:
    """The table: ``str(n)`` at index ``n`` for every ``n`` up to ``largest`` (or up to
    :data:`LIMIT` when ``largest`` is beyond it)."""
    wanted = min(largest, LIMIT) + 1
    if wanted > len(_texts):
        with _growing:
            have = len(_texts)
            if wanted > have:
                _texts.extend(map(str, range(have, wanted)))
    return _texts


def join(numbers: Iterable[int], largest: int) -> str:
    """``numbers`` (none above ``largest``) as decimal text separated by spaces."""
    if largest <= LIMIT:
        return " ".join(map(texts(largest).__getitem__, numbers))
    return " ".join(map(str, numbers))


def join_selected(selectors: Iterable[object], total: int) -> str:
    """The numbers ``1..total`` whose selector is true, as :func:`join` gives them."""
    if total <= LIMIT:
        return " ".join(compress(islice(texts(total), 1, total + 1), selectors))
    return " ".join(map(str, compress(count(1), selectors)))
