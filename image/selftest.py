#!/usr/bin/env python3
"""Asks the image's self-test agent (hearth-selftest.service, in a boot by
`image/run --selftest`) for one named check, over image/run's virtio-serial
socket build/image/vm/selftest.sock.

    image/selftest.py SOCK wait TIMEOUT              # until the agent answers
    image/selftest.py SOCK run TIMEOUT CHECK [ARG...]  # prints the check's output,
                                                     # exits with its status

A request is one line of tab-separated fields (ID, CHECK, ARGs); the agent
runs no shell. Its answer is framed by "@@BEGIN ID" and "@@END ID rc=N".
"""
import re
import socket
import sys
import time


def connect(path, deadline):
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.settimeout(0.5)
            return s
        except OSError:
            if time.time() >= deadline:
                return None
            time.sleep(1)


def ask(s, fields, deadline):
    tag = str(time.time_ns())
    for f in fields:
        if "\t" in f or "\n" in f:
            raise SystemExit("selftest.py: no tabs or newlines in arguments")
    s.sendall(("\t".join([tag] + fields) + "\n").encode())
    buf = b""
    end = re.compile(rb"@@END " + tag.encode() + rb" rc=(\d+)")
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        except OSError:   # qemu went away (the guest panicked or powered off)
            break
        if not chunk:
            break
        buf += chunk
        m = end.search(buf)
        if m:
            text = buf[: m.start()].decode(errors="replace")
            begin = "@@BEGIN " + tag + "\n"
            i = text.find(begin)
            return int(m.group(1)), text[i + len(begin):] if i >= 0 else text
    return None, buf.decode(errors="replace")


def main():
    if len(sys.argv) < 4 or sys.argv[2] not in ("wait", "run"):
        print(__doc__, file=sys.stderr)
        return 2
    path, what, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    deadline = time.time() + timeout
    s = connect(path, deadline)
    if s is None:
        print(f"selftest.py: cannot connect to {path}", file=sys.stderr)
        return 124
    fields = ["ping"] if what == "wait" else sys.argv[4:]
    rc, out = ask(s, fields, deadline)
    s.close()
    if rc is None:
        sys.stdout.write(out)
        print(f"\nselftest.py: no answer within {timeout:.0f}s", file=sys.stderr)
        return 124
    if what == "wait":
        return 0 if "pong" in out else 1
    sys.stdout.write(out)
    return rc


if __name__ == "__main__":
    sys.exit(main())
