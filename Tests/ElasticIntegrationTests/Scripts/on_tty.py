#!/usr/bin/env python3
"""Runs a command with its standard output on a pseudo-terminal, as a user at a terminal would.

Prints the exit status on the first line of stdout, then what the command wrote to the
terminal; the command's stderr passes through. Usage: on_tty.py COMMAND [ARG...]"""
import os, subprocess, sys

master, slave = os.openpty()
r = subprocess.run(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE)
os.close(slave)
seen = b""
while True:
    try:
        chunk = os.read(master, 65536)
    except OSError:  # EIO: the terminal's other end is closed and drained
        break
    if not chunk:
        break
    seen += chunk
sys.stderr.write(r.stderr.decode(errors="replace"))
print(r.returncode)
print(seen.decode(errors="replace"), end="")
