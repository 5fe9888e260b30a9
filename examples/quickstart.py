"""The README's quickstart: one process plays both sides."""

from __future__ import annotations

import numpy as np

from shared_object import SharedObject

frame = SharedObject.create("quickstart-frame", np.zeros((480, 848, 3), np.uint8))  # producer
reader = SharedObject.attach("quickstart-frame")  # consumer (any process)
frame.assign(np.full((480, 848, 3), 7, np.uint8))
if reader.wait(timeout=1.0):  # sleeps in the kernel until a write lands
    print("mean pixel:", reader.fetch(lambda x: x.mean()))  # reduces in place, no copy
print(reader.fetch().shape, reader.modified)  # a private copy; modified is now False
frame.unlink()
