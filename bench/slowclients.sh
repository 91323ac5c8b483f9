#!/usr/bin/env bash
# Slow clients against the router: slowhttptest's slowloris (-H) and slow read (-X) attacks,
# each bounded (30 s, 1000 connections), on loopback, against a `photosrv demo` cluster,
# while wrk measures ordinary clients. Target: their p99 at most 2x the quiet baseline.
#   bench/slowclients.sh            # results in bench/results/slowclients-<time>/
# Stops only what it started (by pid).
set -euo pipefail
cd "$(dirname "$0")/.."
packages=()
command -v slowhttptest >/dev/null 2>&1 || packages+=(slowhttptest)
command -v wrk >/dev/null 2>&1 || packages+=(wrk)
if [ ${#packages[@]} -gt 0 ]; then
  as_root=(); [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
cargo build --release -p photosrv
out="bench/results/slowclients-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
router_port=$(port); admin_port=$(port)
RUST_LOG=warn target/release/photosrv demo --listen "127.0.0.1:$router_port" --admin-listen "127.0.0.1:$admin_port" > "$out/demo.log" 2>&1 &
demo=$!
trap 'kill -INT $demo 2>/dev/null; wait $demo 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q "^Try:" "$out/demo.log" 2>/dev/null && break; sleep 0.1; done
url=$(grep -oE "http://127.0.0.1:$router_port/images/demo/[a-z]+\.svg" "$out/demo.log" | head -1)
[ -n "$url" ] || { echo "demo did not start"; cat "$out/demo.log"; exit 1; }
echo "target: $url"

p99() { grep -E "^ +99%" | awk '{print $2}'; }
ordinary() { wrk -t1 -c8 -d"$1"s --latency "$url"; }

echo "== baseline"
ordinary 10 > "$out/baseline.txt"
base=$(p99 < "$out/baseline.txt")
echo "baseline p99 $base"

attack() {
  local name=$1; shift
  echo "== $name"
  slowhttptest "$@" -c 1000 -r 200 -l 30 -u "$url" -g -o "$out/$name" > "$out/$name.log" 2>&1 &
  local attacker=$!
  sleep 5
  ordinary 20 > "$out/$name-ordinary.txt"
  wait $attacker || true
  local during
  during=$(p99 < "$out/$name-ordinary.txt")
  echo "$name: ordinary clients p99 $during (baseline $base); errors: $(grep -E 'Socket errors|Non-2xx' "$out/$name-ordinary.txt" || echo none)"
  echo "$name $during" >> "$out/summary.txt"
}
echo "baseline $base" > "$out/summary.txt"
attack slowloris -H -i 10 -x 24 -p 3
attack slowread -X -w 512 -y 1024 -n 5 -z 32 -k 3 -p 3
echo "results in $out"
cat "$out/summary.txt"
