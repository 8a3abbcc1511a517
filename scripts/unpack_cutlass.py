#!/usr/bin/env python3
"""Unpacks CUTLASS's C++ headers from PyPI's nvidia-cutlass wheel (setup.sh).

    unpack_cutlass.py WHEEL DEST

writes DEST/include (cute/, cutlass/) and DEST/util/include (cutlass/util/), the two folders
cmake/cutlass.cmake adds to the include path, and nothing else of the wheel.
"""
import shutil
import sys
import zipfile
from pathlib import Path

PARTS = {"cutlass_library/source/include/": "include/",
         "cutlass_library/source/tools/util/include/": "util/include/"}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    wheel, dest = Path(sys.argv[1]), Path(sys.argv[2])
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    count = 0
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            for src, dst in PARTS.items():
                if name.startswith(src) and not name.endswith("/"):
                    out = tmp / dst / name[len(src):]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(z.read(name))
                    count += 1
    if not (tmp / "include/cutlass/cutlass.h").is_file():
        sys.exit(f"unpack_cutlass.py: {wheel} has no cutlass_library/source/include/cutlass/cutlass.h")
    tmp.rename(dest)  # whole or not at all: setup.sh tests for cutlass.h
    print(f"unpacked {count} headers into {dest}")


if __name__ == "__main__":
    main()
