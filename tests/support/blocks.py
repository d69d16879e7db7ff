"""What a piece of code leaves behind in the interpreter's object memory.

``sys.getallocatedblocks()`` counts every block pymalloc has handed out,
including objects parked on the interpreter's free lists (tuples, floats,
dicts...), which a plain heap size misses. The garbage collector is held off
while ``work`` runs, as on a unit between its rare full collections: a full
collection is what empties the free lists.
"""

from __future__ import annotations

import gc
import sys
from typing import Callable


def blocks_left_by(work: Callable[[int], object], times: int) -> int:
    """Blocks still allocated after ``work(i)`` for i in range(``times``), once its results are dropped."""
    gc.collect()
    gc.disable()
    try:
        before = sys.getallocatedblocks()
        for i in range(times):
            work(i)
        return sys.getallocatedblocks() - before
    finally:
        gc.enable()
