#!/usr/bin/env python3
"""An independent reader of `elastic encrypt` output (docs/control-abi.md), built on the
`cryptography` package rather than on ELASTIC's code. Usage: aead_stream_decrypt.py KEY IN AAD
(KEY: the 32 raw bytes of an exported AES-256 key). Writes the plaintext to stdout."""
import sys
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

key = open(sys.argv[1], "rb").read()
data = open(sys.argv[2], "rb").read()
aad = sys.argv[3].encode()
assert data[:5] == b"ELAE\x01", "magic"
n = data[5]
salt = data[6 + n:6 + n + 32]
body = data[6 + n + 32:]
stream_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"elastic/v1/aead-stream").derive(key)
gcm = AESGCM(stream_key)
segment, out, i = 4096 + 16, bytearray(), 0
while True:
    chunk, body = body[:segment], body[segment:]
    final = len(body) == 0
    nonce = bytes(7) + i.to_bytes(4, "big") + (b"\x01" if final else b"\x00")
    out += gcm.decrypt(nonce, chunk, aad)
    i += 1
    if final:
        break
sys.stdout.buffer.write(out)
