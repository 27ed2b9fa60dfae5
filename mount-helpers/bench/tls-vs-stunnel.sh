#!/usr/bin/env bash
# TLS proxy benchmark: `elastic tls serve` (handshake signatures through the control file)
# against stunnel4, side by side on this machine, same backend, same key type (EC P-256),
# TLS 1.3, alternating rounds. Bulk: one connection downloads SIZE MiB of a backend's zeros
# through the proxy (Python ssl client). Handshakes: `openssl s_time -new` (full handshakes,
# no resumption, one client) for SECONDS. Prints one line per proxy and round; compare medians.
# Usage: tls-vs-stunnel.sh BIN_DIR [ROUNDS] [SIZE_MIB] [SECONDS]   (as root; needs stunnel4)
set -euo pipefail
bin=$(cd "$1" && pwd)
rounds=${2:-3}
size=${3:-1024}
secs=${4:-10}
w=$(mktemp -d /dev/shm/elastic-tlsbench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    fusermount3 -u "$w/m" 2>/dev/null || true
    for _ in $(seq 50); do grep -q " $w/m " /proc/mounts || break; sleep 0.1; done
    rm -rf "$w"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
mkdir -p "$w/m"
"$bin/elastic" init --keyfile "$w/k" "$w/s" >/dev/null 2>&1
"$bin/elastic" simulator init --state "$w/sim.json" >/dev/null
"$bin/elastic" simulator set --state "$w/sim.json" --install-certificates "$w/ark.der" >/dev/null 2>&1
"$bin/mount.elastic" "$w/s" "$w/m" -o "keyfile=$w/k,platform=snp-simulator,simulator_state=$w/sim.json" 2>/dev/null
"$bin/elastic" key create --mount "$w/m" web --type ec-p256 >/dev/null
# The backend: each connection gets SIZE MiB of zeros (bulk), or, if it sends first, an HTTP reply (s_time).
backend=$(port)
python3 - "$backend" "$size" >/dev/null 2>&1 <<'PY' &
import socket, sys, threading, select
port, size = int(sys.argv[1]), int(sys.argv[2])
chunk = bytes(1 << 20)
def serve(c):
    try:
        r, _, _ = select.select([c], [], [], 0.2)
        if r:  # a client that speaks first (s_time): a small reply
            c.recv(4096)
            c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
        else:
            for _ in range(size):
                c.sendall(chunk)
    except OSError:
        pass
    c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(512)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
pids+=($!)
# stunnel with an EC P-256 key in a file, TLS 1.3, TCP_NODELAY both ways (as elastic sets it).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$w/st.key" -subj /CN=bench -days 1 \
    -out "$w/st.pem" 2>/dev/null
sport=$(port)
cat > "$w/stunnel.conf" <<CONF
foreground = yes
pid =
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
[bench]
accept = 127.0.0.1:$sport
connect = 127.0.0.1:$backend
cert = $w/st.pem
key = $w/st.key
sslVersionMin = TLSv1.3
CONF
stunnel4 "$w/stunnel.conf" 2>/dev/null &
pids+=($!)
eport=$(port)
"$bin/elastic" tls serve --mount "$w/m" --listen "127.0.0.1:$eport" --to "127.0.0.1:$backend" --key web 2>"$w/serve.log" &
pids+=($!)
for _ in $(seq 100); do grep -q 'serving TLS' "$w/serve.log" && break; sleep 0.1; done
sleep 0.5
bulk() {
    python3 - "$1" <<'PY'
import socket, ssl, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
ctx.minimum_version = ssl.TLSVersion.TLSv1_3
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="bench")
t = time.monotonic(); n = 0
while True:
    b = s.recv(1 << 20)
    if not b: break
    n += len(b)
print(f"{n / (time.monotonic() - t) / 1e6:.0f}")
PY
}
handshakes() {
    openssl s_time -connect "127.0.0.1:$1" -new -time "$secs" 2>/dev/null | awk '/connections in .* real seconds/ {printf "%.0f", $1 / $4}'
}
for r in $(seq "$rounds"); do
    for target in stunnel elastic; do
        p=$([ "$target" = stunnel ] && echo "$sport" || echo "$eport")
        echo "round $r $target bulk_MBps=$(bulk "$p") handshakes_per_s=$(handshakes "$p")"
    done
done
