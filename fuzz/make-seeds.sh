#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Write the seed layers of fuzz_extract into DIR: small tar layers (plain, gzip, zstd when the zstd tool is
# there) of every kind of entry the safe extractor meets, the hostile ones of tests/integration's
# test_hostile_images.sh included. Made here rather than committed as binaries.
set -euo pipefail
dir=${1:?usage: fuzz/make-seeds.sh DIR}
mkdir -p "$dir"
python3 - "$dir" <<'PY'
import gzip, io, sys, tarfile

out = sys.argv[1]

def entry(name, kind=tarfile.REGTYPE, data=b"", mode=0o644, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.size = kind, mode, link, len(data)
    return info, data

def layer(name, entries, fmt=tarfile.PAX_FORMAT):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for info, data in entries:
            t.addfile(info, io.BytesIO(data) if data else None)
    raw = buf.getvalue()
    open(f"{out}/{name}.tar", "wb").write(raw)
    open(f"{out}/{name}.tar.gz", "wb").write(gzip.compress(raw, mtime=0))

D, S, L, H = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE
layer("plain", [entry("src/", D, mode=0o755), entry("src/predict.py", data=b"print(1)\n"),
                entry("src/run", data=b"#!/bin/sh\n", mode=0o755), entry("src/link", S, link="predict.py"),
                entry("src/hard", L, link="src/predict.py"), entry("fifo", tarfile.FIFOTYPE)])
layer("whiteouts", [entry("a/", D), entry("a/.wh.b"), entry("a/.wh..wh..opq"), entry("a/c", data=b"c"),
                    entry(".wh..wh.plnk/1"), entry(".wh.gone")])
layer("dotdot", [entry("../escape", data=b"x"), entry("a/../../b", data=b"y")])
layer("absolute", [entry("/etc/kiln-fuzz", data=b"x"), entry("//abs/./path", data=b"y")])
layer("symlink_out", [entry("out", S, link=".."), entry("out/kiln-fuzz", data=b"through"),
                      entry("up", S, link="../root/.."), entry("up/x", data=b"z")])
layer("hardlink_out", [entry("h", L, link="/etc/passwd"), entry("h2", L, link="../sentinel")])
layer("devices", [entry("dev/", D), entry("dev/null", H), entry("dev/sda", tarfile.BLKTYPE),
                  entry("suid", data=b"x", mode=0o4755), entry("sticky/", D, mode=0o1777)])
layer("gnu_long", [entry("d/" + "n" * 200, data=b"long"), entry("l", S, link="t" * 300)],
      fmt=tarfile.GNU_FORMAT)
layer("replace", [entry("x", data=b"file"), entry("x/", D), entry("x", S, link="y"), entry("x", data=b"again")])
PY
if command -v zstd >/dev/null; then
	zstd -q -f "$dir/plain.tar" -o "$dir/plain.tar.zst"
fi
