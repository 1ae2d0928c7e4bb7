#!/usr/bin/env python3
"""Writes image INDEX of a CIFAR-10 binary file as a PNG (standard library only).

usage: cifar-png.py BATCH.bin INDEX OUT.png   (prints the image's label)
"""
import struct
import sys
import zlib

CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
           "dog", "frog", "horse", "ship", "truck"]


def main():
    path, index, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(path, "rb") as f:
        f.seek(index * 3073)
        rec = f.read(3073)
    if len(rec) != 3073:
        sys.exit(f"{path}: no record {index}")
    label, chw = rec[0], rec[1:]
    # PNG rows: a filter byte (0) then RGB triples.
    rows = b"".join(
        b"\0" + bytes(chw[c * 1024 + y * 32 + x] for x in range(32) for c in range(3))
        for y in range(32))

    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(rows))
           + chunk(b"IEND", b""))
    with open(out, "wb") as f:
        f.write(png)
    print(CLASSES[label])


if __name__ == "__main__":
    main()
