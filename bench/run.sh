#!/usr/bin/env bash
# The router beside nginx and HAProxy under wrk, in one command:
#   bench/run.sh            # full: 3 runs x 10 s per proxy, size and thread budget
#   bench/run.sh --quick    # 1 run x 5 s, to try it out
#   bench/run.sh --suite storage   # photosrv storage vs nginx serving the same files
# Installs what it needs (Debian nginx-light, haproxy, wrk, python3-matplotlib), builds the
# router, then runs bench/run.py. Everything binds 127.0.0.1, is bounded in time, and stops
# what it started. Results: bench/results/<timestamp>/{results.json,results.md,chart.png}.
set -euo pipefail
cd "$(dirname "$0")/.."
packages=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || packages+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || packages+=(haproxy)
command -v wrk >/dev/null 2>&1 || packages+=(wrk)
command -v taskset >/dev/null 2>&1 || packages+=(util-linux)
/usr/bin/python3 -c 'import matplotlib' >/dev/null 2>&1 || packages+=(python3-matplotlib)
if [ ${#packages[@]} -gt 0 ]; then
  as_root=()
  [ "$(id -u)" -eq 0 ] || as_root=(sudo)
  "${as_root[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${packages[@]}"
fi
cargo build --release -p photosrv
exec /usr/bin/python3 bench/run.py "$@"
