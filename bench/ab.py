#!/usr/bin/env python3
"""Interleaved A/B of proxies or router builds at one object size, one thread each.

The same nodes, data set and wrk load as bench/run.py (whose functions this uses), but each
round measures every variant once, in order, so the machine's drift hits them alike; meant
for comparing two builds or two settings of the router, where run.py compares proxies.
Prints one line per variant and round: req/s, p50 and p99 latency, and the CPU seconds per
10k requests of the proxy (and of its kernel time), the nodes, wrk, and all of them (the
machine), and the proxy's peak RSS.

A variant is a proxy of run.py, optionally with a photosrv binary and config settings:

    photosrv-random                         the build in target/release
    photosrv-random@/tmp/old/photosrv       another build
    photosrv-random+splice_bodies=on        a setting added to the config (repeatable)
    nginx, haproxy, direct

Example (about 4 minutes):

    python3 bench/ab.py --size 256k --rounds 4 photosrv-random photosrv-random+splice_bodies=on nginx

Run bench/run.sh once first: it installs nginx, HAProxy and wrk. Everything binds 127.0.0.1
and stops (by pid) only what it started.
"""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402


def parse_variant(text, default_binary):
    """(label, proxy, binary, settings) of `PROXY[@BINARY][+KEY=VALUE]...`."""
    head, *settings = text.split("+")
    proxy, _, binary = head.partition("@")
    if proxy not in run.PROXIES:
        raise SystemExit(f"{text}: unknown proxy {proxy!r} (one of {', '.join(run.PROXIES)})")
    pairs = []
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or not key or not value:
            raise SystemExit(f"{text}: {setting!r} is not KEY=VALUE")
        pairs.append((key, value))
    return text, proxy, binary or default_binary, pairs


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variants", nargs="+", metavar="VARIANT")
    parser.add_argument("--size", choices=sorted(run.SIZES), default="256k")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--nginx", default="/usr/sbin/nginx")
    parser.add_argument("--haproxy", default="/usr/sbin/haproxy")
    parser.add_argument("--proxy-cpu", type=float, metavar="SHARE",
                        help="limit the proxy to SHARE of its core (a cgroup CPU quota, as in run.py; needs root)")
    args = parser.parse_args()
    default_binary = str(run.ROOT / "target/release/photosrv")
    variants = [parse_variant(v, default_binary) for v in args.variants]

    cpu_limit = run.CpuLimit(args.proxy_cpu) if args.proxy_cpu else None
    procs = run.Processes()
    work = Path(tempfile.mkdtemp(prefix="photosrv-ab-"))
    os.chmod(work, 0o755)
    plain_config = run.photosrv_config
    try:
        nodes = run.start_nodes(procs, work, args.nginx)
        keys = run.store_dataset(work, nodes, [args.size])
        script = run.wrk_script(work, args.size, keys[args.size])
        node_pids = [pid for proc in procs.procs for pid in run.descendants(proc.pid)]
        width = max(len(label) for label, *_ in variants)
        for round_ in range(args.rounds):
            for label, proxy, binary, settings in variants:
                def config(work_, nodes_, settings=settings):
                    path = plain_config(work_, nodes_)
                    lines = "".join(f"  {key} {value}\n" for key, value in settings)
                    path.write_text(path.read_text().replace("  chooser jump\n", "  chooser jump\n" + lines, 1))
                    return path
                run.photosrv_config = config
                proc, port = run.start_proxy(procs, work, proxy, 1, nodes, args.nginx, args.haproxy, binary, cpu_limit)
                try:
                    m = run.measure(proc, port, script, args.duration, args.connections, node_pids)
                finally:
                    if proc:
                        procs.stop(proc)
                fmt = lambda value: "-" if value is None else f"{value:.3f}"
                print(f"round {round_} {label:{width}} {m['rps']:9.0f} req/s  p50 {m['p50_ms']:.2f} p99 {m['p99_ms']:.2f} ms"
                      f"  proxy {fmt(m['cpu_s_per_10k'])}"
                      f" (kernel {fmt(m['kernel_cpu_s_per_10k'])})  nodes {fmt(m['nodes_cpu_s_per_10k'])}"
                      f"  wrk {fmt(m['wrk_cpu_s_per_10k'])}  machine {fmt(m['machine_cpu_s_per_10k'])}"
                      f"  CPU s per 10k requests  peak RSS {fmt(m['rss_mib'])} MiB", flush=True)
    finally:
        run.photosrv_config = plain_config
        procs.stop_all()
        if cpu_limit:
            cpu_limit.remove()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
