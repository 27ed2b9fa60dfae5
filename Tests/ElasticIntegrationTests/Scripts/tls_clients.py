#!/usr/bin/env python3
"""Plain TLS clients for the proxy tests (Python's ssl module, no attestation checks: the
proxy's transport is what is exercised here).

  tls_clients.py concurrent HOST PORT N PATH EXPECT
      N connections at once, each GET PATH; prints "ok=K" (K whose body contains EXPECT).
  tls_clients.py vanish HOST PORT PATH
      GET PATH (a large file), read 64 KiB, then reset the connection; prints "vanished".
  tls_clients.py hold HOST PORT PATH GOFILE
      Handshake, print the SHA-256 of the server's certificate, wait until GOFILE exists, then
      GET PATH on the same connection and print the body.
  tls_clients.py fingerprint HOST PORT
      Print the SHA-256 of the server's certificate.
"""
import hashlib
import os
import socket
import ssl
import struct
import sys
import threading
import time


def connect(host, port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    raw = socket.create_connection((host, port), timeout=60)
    return ctx.wrap_socket(raw, server_hostname=host)


def get(s, path):
    s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    chunks = []
    while True:
        b = s.recv(65536)
        if not b:
            break
        chunks.append(b)
    return b"".join(chunks)


def fingerprint(s):
    return hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()


def main():
    cmd, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if cmd == "concurrent":
        n, path, expect = int(sys.argv[4]), sys.argv[5], sys.argv[6].encode()
        ok = [0]
        lock = threading.Lock()
        barrier = threading.Barrier(n)

        def one():
            try:
                s = connect(host, port)
                barrier.wait(timeout=120)  # all n connections open at once
                body = get(s, path)
                s.close()
                if expect in body:
                    with lock:
                        ok[0] += 1
            except Exception as e:  # counted as a failure
                print("error:", e, file=sys.stderr)

        threads = [threading.Thread(target=one) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"ok={ok[0]}")
    elif cmd == "vanish":
        s = connect(host, port)
        s.sendall(f"GET {sys.argv[4]} HTTP/1.0\r\n\r\n".encode())
        got = 0
        while got < 65536:
            b = s.recv(65536)
            if not b:
                break
            got += len(b)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        print("vanished")
    elif cmd == "hold":
        s = connect(host, port)
        print(fingerprint(s), flush=True)
        while not os.path.exists(sys.argv[5]):
            time.sleep(0.05)
        sys.stdout.write(get(s, sys.argv[4]).decode(errors="replace"))
    elif cmd == "fingerprint":
        s = connect(host, port)
        print(fingerprint(s))
        s.close()


if __name__ == "__main__":
    main()
