#!/usr/bin/env python3
"""Puts members of several trainings together into one committee.

    inference/bench/committee.py OUT MODELS:K[,K...] [MODELS:K...]

Takes member K of each MODELS/hearth-intent/heads.safetensors (tensors named
`m{K}.…`), renumbers them in order into OUT/hearth-intent/, and writes its
meta.json from the first source's with `recipe.members` and
`weights_sha256` set; the encoder and the instruct model are linked from
the first source. The engine reads any number of members: docs/perf.md's
"committees made of the two-member trainings' members" were made with this
and evaluated with inference/bench/evalsets.sh.
"""
import hashlib
import json
import os
import struct
import sys


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        return header, f.read()


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, sources = sys.argv[1], sys.argv[2:]
    tensors, meta, first = {}, None, None
    k = 0
    for arg in sources:
        src, picks = arg.rsplit(":", 1)
        first = first or src
        header, data = read(os.path.join(src, "hearth-intent/heads.safetensors"))
        if meta is None:
            with open(os.path.join(src, "hearth-intent/meta.json")) as f:
                meta = json.load(f)
        for pick in (int(x) for x in picks.split(",")):
            names = [n for n in header if n.startswith(f"m{pick}.")]
            if not names:
                sys.exit(f"{src} has no member {pick}")
            for name in names:
                info = header[name]
                a, b = info["data_offsets"]
                rest = name.split(".", 1)[1]
                tensors[f"m{k}.{rest}"] = (info["dtype"], info["shape"], data[a:b])
            k += 1
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        dtype, shape, blob = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(blob)]}
        off += len(blob)
        blobs.append(blob)
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    body = struct.pack("<Q", len(hb)) + hb + b"".join(blobs)
    os.makedirs(os.path.join(out, "hearth-intent"), exist_ok=True)
    with open(os.path.join(out, "hearth-intent/heads.safetensors"), "wb") as f:
        f.write(body)
    meta["recipe"]["members"] = k
    meta["weights_sha256"] = hashlib.sha256(body).hexdigest()
    with open(os.path.join(out, "hearth-intent/meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    for entry in os.listdir(first):
        if entry != "hearth-intent" and not os.path.exists(os.path.join(out, entry)):
            os.symlink(os.path.realpath(os.path.join(first, entry)), os.path.join(out, entry))
    print(f"{out}: {k} members")


main()
