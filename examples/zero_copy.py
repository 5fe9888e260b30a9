"""Three ways to read a camera frame, from "a private copy" to "no copy at all".

Run: ``python -m examples.zero_copy``. One process plays both sides; across processes or
containers the code is the same.
"""

from __future__ import annotations

import os

import numpy as np

from shared_object import SharedObject

NAME = f"zero-copy-{os.getpid()}"


def main() -> None:
    camera = SharedObject.create(NAME, np.zeros((480, 848, 3), np.uint8))
    reader = SharedObject.attach(NAME)
    try:
        camera.assign(np.full((480, 848, 3), 100, np.uint8))

        # 1. fetch(): a private copy you may keep and change.
        frame = reader.fetch()
        frame[0, 0] = 0  # changes your copy only

        # 2. fetch(fn): fn sees read-only views of shared memory; only its result is private.
        #    A reduction copies nothing; a slice copies just the slice.
        brightness = reader.fetch(lambda f: float(f.mean()))
        red_row = reader.fetch(lambda f: f[240, :, 0])  # 848 bytes copied, not 1.2 MB

        # 3. view(): no copy at all, for as long as the block runs. A writer may overwrite the
        #    data meanwhile: then v.torn is true and whatever you computed must be redone.
        while True:
            with reader.view() as v:
                green_max = int(v.value[..., 1].max())
            if not v.torn:
                break

        # fetch(out=...): copy into an array you allocated once (a steady loop allocates nothing).
        buffer = np.empty((480, 848, 3), np.uint8)
        reader.fetch(out=buffer)

        print(
            f"brightness {brightness:.1f}, red row {red_row.shape} {red_row.flags.writeable}, "
            f"green max {green_max}, buffer mean {buffer.mean():.1f}, my copy "
            f"{frame[0, 0].tolist()}"
        )
    finally:
        camera.unlink()
        reader.close()
        camera.close()


if __name__ == "__main__":
    main()
