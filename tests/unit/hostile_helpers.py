"""Functions that bounded worker processes import by name in tests/unit/test_hostile.py: each
plays a worker that something took over (a scorer that evaluated a hostile answer)."""

import os
import pickle
import struct
import sys


class _Planted:
    def __reduce__(self):
        return (open, (os.environ["POSTTRAIN_HOSTILE_MARK"], "w"))


def write_a_pickle_frame(batch_hint: int) -> float:
    """Writes, on the worker's reply channel, frames that would run code if they were unpickled
    (for the next batches too), then answers normally."""
    out = sys.__stdout__.buffer
    for batch in range(batch_hint, batch_hint + 4):
        data = pickle.dumps((batch, "ok", _Planted()))
        out.write(struct.pack("<I", len(data)) + data)
    out.flush()
    return 1.0


def environment_value(name: str):
    """What the worker's environment holds under `name`."""
    return os.environ.get(name)


def a_reply_that_is_not_plain_data(_: int):
    """An object, not plain data: it must not cross as one."""
    return _Planted()
