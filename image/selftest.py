#!/usr/bin/env python3
"""Asks the image's self-test agent (hearth-selftest.service, in a boot by
`image/run --selftest`) for one named check, over image/run's virtio-serial
socket build/image/vm/selftest.sock.

    image/selftest.py SOCK wait TIMEOUT [QEMU-PID]   # until the agent answers
    image/selftest.py SOCK run TIMEOUT CHECK [ARG...]  # prints the check's output,
                                                     # exits with its status

Exit status 124: connected, no answer within TIMEOUT; 125: could not connect
(no qemu, or no self-test port); 126 (wait with QEMU-PID): qemu ended before
the agent answered (a guest that panicked under -no-reboot).

A request is one line of tab-separated fields (ID, CHECK, ARGs); the agent
runs no shell. Its answer is framed by "@@BEGIN ID" and "@@END ID rc=N".
"""
import os
import re
import socket
import sys
import time


def alive(pid):
    if pid is None:
        return True
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def connect(path, deadline, pid=None):
    while True:
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            s.settimeout(0.5)
            return s
        except OSError:
            if time.time() >= deadline or not alive(pid):
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
    pid = int(sys.argv[4]) if what == "wait" and len(sys.argv) > 4 else None
    deadline = time.time() + timeout
    s = connect(path, deadline, pid)
    if s is None:
        if not alive(pid):
            print(f"selftest.py: qemu (pid {pid}) ended", file=sys.stderr)
            return 126
        print(f"selftest.py: cannot connect to {path}", file=sys.stderr)
        return 125
    fields = ["ping"] if what == "wait" else sys.argv[4:]
    rc, out = ask(s, fields, deadline)
    s.close()
    if rc is None and not alive(pid):
        print(f"selftest.py: qemu (pid {pid}) ended", file=sys.stderr)
        return 126
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
