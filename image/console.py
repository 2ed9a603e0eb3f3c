#!/usr/bin/env python3
"""Runs shell commands on the image's serial console (image/run's serial.sock).

    image/console.py SOCK wait-shell TIMEOUT   # until a root shell answers
    image/console.py SOCK run TIMEOUT CMD...   # prints CMD's output, exits with its status

The console is a root shell (serial-getty autologin, see image/build). Each
command is framed by markers the shell prints, so kernel messages and the
echo of the typed line are told apart from the output.
"""
import re
import socket
import sys
import time


def connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(0.5)
    return s


def read_until(s, pattern, deadline):
    buf = b""
    while time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            chunk = b""
        if chunk:
            buf += chunk
            m = re.search(pattern, buf)
            if m:
                return buf, m
    return buf, None


def run(s, cmd, timeout):
    tag = str(time.time_ns())
    line = f'echo "@@B""{tag}"; {cmd}; echo "@@E""{tag} $?"\n'
    s.sendall(line.encode())
    buf, m = read_until(s, rb"@@E" + tag.encode() + rb" (\d+)", time.time() + timeout)
    if not m:
        sys.stdout.write(buf.decode(errors="replace"))
        print(f"\nconsole.py: no answer within {timeout}s", file=sys.stderr)
        return 124
    text = buf[: m.start()].decode(errors="replace")
    start = text.rfind("@@B" + tag)
    out = text[start + len("@@B" + tag):] if start >= 0 else text
    sys.stdout.write(out.lstrip("\r\n").replace("\r\n", "\n"))
    return int(m.group(1))


def main():
    path, what, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    deadline = time.time() + timeout
    if what == "wait-shell":
        while time.time() < deadline:
            try:
                s = connect(path)
            except OSError:
                time.sleep(2)
                continue
            while time.time() < deadline:
                s.sendall(b"\n")
                s.sendall(b'echo "@@READY""$((6*7))"\n')
                _, m = read_until(s, rb"@@READY42", min(deadline, time.time() + 10))
                if m:
                    return 0
            return 124
        return 124
    if what == "run":
        s = connect(path)
        return run(s, " ".join(sys.argv[4:]), timeout)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
