#!/usr/bin/env python3
"""Benchmark the photosrv router beside nginx and HAProxy, in one run, on this machine.

Four nginx WebDAV nodes (2 shards x 2 replicas, from examples/nginx-storage.conf) hold a data
set of 4 KiB, 256 KiB and 4 MiB objects. In front of them: photosrv (random and multihead),
nginx (`hash $request_uri consistent`, keepalive upstreams), HAProxy (`balance uri`,
`hash-type consistent`), and direct access to one node as the ceiling, all running, measured
one at a time in rounds (each round measures every proxy once, starting one proxy later than
the round before, so the machine's drift hits all alike). Each proxy gets the same CPU budget
(1 worker thread pinned to CPU 1 with taskset, then 2 threads), the same wrk load (a Lua script
rotating over the keys, fixed connections) and N runs, of which the median counts. photosrv's
ratios to nginx and HAProxy are also given round by round, each from one round's runs.

Every object is stored on all four nodes, so every proxy's placement finds it: nginx and
HAProxy hash differently from photosrv, and a 404 would not be a fair comparison.

Run through bench/run.sh, which installs the tools. Everything binds 127.0.0.1, is bounded in
time, and stops (by pid) only what it started.
"""

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"4k": 4096, "256k": 256 * 1024, "1m": 1024 * 1024, "4m": 4 * 1024 * 1024}
KEYS_PER_SIZE = {"4k": 2000, "256k": 200, "1m": 50, "4m": 20}
PROXIES = ["photosrv-random", "photosrv-multihead", "nginx", "haproxy", "direct"]
STORAGE_SERVERS = ["photosrv-storage", "nginx-storage"]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, what, limit=10.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {limit}s")


def descendants(pid):
    """pid and every process below it."""
    found, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == parent:
                found.append(int(entry))
                frontier.append(int(entry))
    return found


def cpu_seconds(pids):
    """(user, kernel) CPU seconds of the processes."""
    user = kernel = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11])  # utime
            kernel += int(fields[12])  # stime
        except OSError:
            pass
    return user / CLK_TCK, kernel / CLK_TCK


def peak_rss_mib(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class CpuLimit:
    """A CPU budget below a whole core: each proxy in a cgroup of its own whose CFS bandwidth
    limit (cgroup v2 `cpu.max`, or v1's `cpu.cfs_quota_us`) lets it run `share` of a core per
    thread. With a whole core the proxy is not what caps a run on this machine, the core the
    nodes and wrk share is; at half a core the proxy is the limit, so its req/s measures its own
    cost per request. Needs root (or a delegated cgroup)."""

    PERIOD_US = 10_000  # short, so that a throttled proxy waits at most a few ms at a time

    def __init__(self, share):
        if not 0 < share <= 1:
            raise SystemExit(f"--proxy-cpu {share}: a share of a core, above 0 and at most 1")
        self.share = share
        v2 = Path("/sys/fs/cgroup")
        if (v2 / "cgroup.subtree_control").exists() and "cpu" in (v2 / "cgroup.subtree_control").read_text().split():
            self.root, self.v2 = v2, True
        elif (v2 / "cpu" / "cpu.cfs_quota_us").exists():
            self.root, self.v2 = v2 / "cpu", False
        else:
            raise SystemExit("--proxy-cpu needs a cgroup cpu controller (v2 with cpu enabled, or v1's cpu)")
        self.groups = []

    def confine(self, name, pids, threads):
        group = self.root / f"photosrv-bench-{os.getpid()}-{len(self.groups)}-{name}-{threads}"
        try:
            group.mkdir()
        except PermissionError:
            raise SystemExit(f"--proxy-cpu: no permission to make {group} (run as root)") from None
        self.groups.append(group)
        quota = int(self.share * threads * self.PERIOD_US)
        if self.v2:
            (group / "cpu.max").write_text(f"{quota} {self.PERIOD_US}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(self.PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        for pid in pids:
            (group / "cgroup.procs").write_text(str(pid))

    def remove(self):
        """Once their processes are stopped, the groups are empty and can go."""
        for group in self.groups:
            try:
                group.rmdir()
            except OSError as error:
                print(f"could not remove {group}: {error}", file=sys.stderr)
        self.groups = []


class Processes:
    """Everything started here, stopped by pid."""

    def __init__(self):
        self.procs = []

    def start(self, args, cpus=None, env=None, log=None):
        if cpus is not None:
            args = ["taskset", "-c", cpus] + args
        out = open(log, "wb") if log else subprocess.DEVNULL
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self, proc, sig=signal.SIGTERM):
        if proc.poll() is None:
            for pid in reversed(descendants(proc.pid)):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                for pid in descendants(proc.pid):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                proc.wait(timeout=5)
        if proc in self.procs:
            self.procs.remove(proc)

    def stop_all(self):
        for proc in list(self.procs):
            self.stop(proc)


def render_node_config(example, port, workdir, root):
    out = []
    for line in example.splitlines():
        t = line.strip()
        if t.startswith("worker_processes "):
            t = "worker_processes 1;"
        elif t.startswith("pid "):
            t = f"pid {workdir}/nginx.pid;"
        elif t.startswith("error_log "):
            t = f"error_log {workdir}/error.log warn;"
        elif t.startswith("access_log "):
            t = "access_log off;"
        elif t.startswith("listen "):
            t = f"listen 127.0.0.1:{port};"
        elif t.startswith("root "):
            t = f"root {root};"
        elif t.startswith("client_body_temp_path "):
            t = f"client_body_temp_path {root}/.tmp 1 2;"
        out.append(t)
    text = "\n".join(out) + "\n"
    temps = "".join(f"    {k}_temp_path {workdir}/{k}_temp;\n" for k in ["proxy", "fastcgi", "uwsgi", "scgi"])
    return text.replace("http {\n", "http {\n" + temps, 1)


def start_nodes(procs, work, nginx):
    example = (ROOT / "examples/nginx-storage.conf").read_text()
    nodes = []
    for i in range(4):
        d = work / f"node{i}"
        root = d / "root"
        (root / ".tmp").mkdir(parents=True)
        port = free_port()
        conf = d / "nginx.conf"
        # The nodes share CPU 0 with wrk; the proxy under test gets CPU 1. They are the
        # harness, not what is measured: caching open files (the data set does not change
        # during a run) takes a sixth off their CPU per request and lifts the ceiling for
        # every proxy alike.
        conf.write_text(render_node_config(example, port, d, root).replace(
            "sendfile on;", "sendfile on;\nopen_file_cache max=4096 inactive=60s;\nopen_file_cache_valid 60s;", 1))
        proc = procs.start([nginx, "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf), "-g", "daemon off; master_process off;"], cpus="0")
        wait_port(port, proc, f"nginx node {i}")
        nodes.append({"port": port, "root": root, "pid": proc.pid})
    return nodes


def store_dataset(work, nodes, sizes):
    """Every object on every node (hard links: one copy on disk)."""
    keys = {}
    master = work / "dataset"
    for size_name in sizes:
        size = SIZES[size_name]
        names = []
        block = os.urandom(min(size, 1 << 20))
        for i in range(KEYS_PER_SIZE[size_name]):
            key = f"images/{size_name}/{i:05d}.jpg"
            path = master / key
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as f:
                written = 0
                while written < size:
                    chunk = block[: size - written]
                    f.write(chunk)
                    written += len(chunk)
            names.append(key)
            for node in nodes:
                target = node["root"] / key
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, target)
        keys[size_name] = names
    return keys


def photosrv_config(work, nodes):
    cfg = work / "photosrv.cfg"
    urls = [f"http://127.0.0.1:{n['port']}" for n in nodes]
    cfg.write_text(
        "<photosrv>\n  chooser jump\n  <bench>\n    <shards>\n"
        f"      shard1 {urls[0]} {urls[1]}\n      shard2 {urls[2]} {urls[3]}\n"
        "    </shards>\n  </bench>\n</photosrv>\n"
    )
    return cfg


def start_storage(procs, work, name, threads, nodes, nginx, photosrv):
    """A storage server on CPU 1 (with threads=1) serving node 0's files."""
    port = free_port()
    cpus = "1" if threads == 1 else None
    root = nodes[0]["root"]
    d = work / f"{name}-{threads}"
    d.mkdir(exist_ok=True)
    if name == "photosrv-storage":
        env = dict(os.environ, RUST_LOG="warn")
        proc = procs.start([photosrv, "storage", "--root", str(root), "--listen", f"127.0.0.1:{port}",
                            "--threads", str(threads)], cpus=cpus, env=env, log=d / "log")
    else:
        example = (ROOT / "examples/nginx-storage.conf").read_text()
        conf = d / "nginx.conf"
        conf.write_text(render_node_config(example, port, d, root).replace("worker_processes 1;", f"worker_processes {threads};"))
        proc = procs.start([nginx, "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf), "-g", "daemon off;"], cpus=cpus)
    wait_port(port, proc, name)
    return proc, port


def start_proxy(procs, work, name, threads, nodes, nginx, haproxy, photosrv, cpu_limit=None):
    proc, port = start_server(procs, work, name, threads, nodes, nginx, haproxy, photosrv)
    if cpu_limit and proc:
        cpu_limit.confine(name, descendants(proc.pid), threads)
    return proc, port


def start_server(procs, work, name, threads, nodes, nginx, haproxy, photosrv):
    if name in STORAGE_SERVERS:
        return start_storage(procs, work, name, threads, nodes, nginx, photosrv)
    port = free_port()
    cpus = "1" if threads == 1 else None
    upstreams = [f"127.0.0.1:{n['port']}" for n in nodes]
    d = work / f"{name}-{threads}"
    d.mkdir(exist_ok=True)
    if name.startswith("photosrv"):
        mode = name.split("-")[1]
        env = dict(os.environ, RUST_LOG="warn")
        args = [photosrv, "serve", "--config", str(photosrv_config(work, nodes)), "--listen", f"127.0.0.1:{port}",
                "--admin-listen", f"127.0.0.1:{free_port()}", "--mode", mode, "--head-timeout-ms", "1000",
                "--threads", str(threads)]
        proc = procs.start(args, cpus=cpus, env=env, log=d / "log")
    elif name == "nginx":
        servers = "".join(f"        server {u} max_fails=0;\n" for u in upstreams)
        conf = d / "nginx.conf"
        conf.write_text(f"""worker_processes {threads};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    proxy_temp_path {d}/proxy_temp;
    client_body_temp_path {d}/body_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    upstream storage {{
        hash $request_uri consistent;
{servers}        keepalive 256;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://storage;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffers 16 64k;
            proxy_buffer_size 64k;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
""")
        proc = procs.start([nginx, "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf), "-g", "daemon off;"], cpus=cpus)
    elif name == "haproxy":
        servers = "".join(f"    server n{i} {u} maxconn 1000\n" for i, u in enumerate(upstreams))
        conf = d / "haproxy.cfg"
        conf.write_text(f"""global
    nbthread {threads}
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
    http-reuse always
frontend fe
    bind 127.0.0.1:{port}
    default_backend storage
backend storage
    balance uri
    hash-type consistent
{servers}""")
        proc = procs.start([haproxy, "-db", "-f", str(conf)], cpus=cpus, log=d / "log")
    elif name == "direct":
        return None, nodes[0]["port"]
    else:
        raise ValueError(name)
    wait_port(port, proc, name)
    return proc, port


def wrk_script(work, size_name, keys):
    keyfile = work / f"keys-{size_name}.txt"
    keyfile.write_text("\n".join(keys) + "\n")
    script = work / f"rotate-{size_name}.lua"
    # The requests are formatted once, in init: formatting one per request in Lua cost wrk
    # about a tenth of its CPU, on the core it shares with the nodes.
    script.write_text(f"""local requests = {{}}
local i = 0
init = function(args)
  for line in io.lines("{keyfile}") do requests[#requests + 1] = wrk.format("GET", "/" .. line) end
  i = math.random(#requests)
end
request = function()
  i = i + 1
  if i > #requests then i = 1 end
  return requests[i]
end
""")
    return script


def parse_duration(text):
    value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(port, script, duration, connections):
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=duration + 60,
    ).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    result["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        result[f"p{pct}_ms"] = parse_duration(m.group(1)) if m else None
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    result["non_2xx"] = int(bad.group(1)) if bad else 0
    result["socket_errors"] = errors.group(1) if errors else ""
    return result


def children_cpu_seconds():
    """CPU of this script's finished children (wrk, once waited for)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tcp_segments_sent():
    """The machine's TCP segments sent so far (/proc/net/snmp): on loopback every segment is
    sent by one process here and received by another."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Tcp:")]
    return int(lines[1][lines[0].index("OutSegs")])


def measure(proc, port, script, duration, connections, harness_pids=()):
    pids = descendants(proc.pid) if proc else []
    # Warm up pools and caches, then measure.
    run_wrk(port, script, 2, connections)
    user_before, kernel_before = cpu_seconds(pids)
    harness_before, wrk_before = sum(cpu_seconds(list(harness_pids))), children_cpu_seconds()
    segments_before = tcp_segments_sent()
    started = time.monotonic()
    result = run_wrk(port, script, duration, connections)
    wall = time.monotonic() - started
    segments = tcp_segments_sent() - segments_before
    user_after, kernel_after = cpu_seconds(pids)
    harness_after, wrk_after = sum(cpu_seconds(list(harness_pids))), children_cpu_seconds()
    per_10k = lambda used: used / result["requests"] * 10000 if result["requests"] else None
    proxy_used = user_after - user_before + kernel_after - kernel_before
    result["cpu_s_per_10k"] = per_10k(proxy_used) if proc else None
    # The kernel's share: mostly loopback TCP.
    result["kernel_cpu_s_per_10k"] = per_10k(kernel_after - kernel_before) if proc else None
    # On loopback a send runs the receiver's TCP stack, and an ACK that opens a window sends
    # what the peer had queued: which process pays depends on timing, not on the work. The
    # whole machine's CPU (proxy, nodes and wrk) per request is the cost that does not move.
    rest_used = harness_after - harness_before + wrk_after - wrk_before
    result["machine_cpu_s_per_10k"] = per_10k(proxy_used + rest_used) if harness_pids else None
    result["nodes_cpu_s_per_10k"] = per_10k(harness_after - harness_before) if harness_pids else None
    result["wrk_cpu_s_per_10k"] = per_10k(wrk_after - wrk_before)
    # How busy each side was, in percent of one core. With one thread the proxy has CPU 1 and
    # the nodes and wrk have CPU 0: the side near 100% is what capped the run, and a proxy
    # well below it was waiting for the others, so its req/s is the harness's, not its own.
    result["proxy_busy_pct"] = 100 * proxy_used / wall if proc else None
    result["rest_busy_pct"] = 100 * rest_used / wall if harness_pids else None
    result["rss_mib"] = peak_rss_mib(pids) if proc else None
    # A request and its response are one segment each per hop (2 direct, 4 through a proxy)
    # when every ACK rides on data; more means pure ACKs or a body cut into pieces.
    result["tcp_segments_per_request"] = segments / result["requests"] if result["requests"] else None
    return result


def median_run(runs):
    ordered = sorted(runs, key=lambda r: r["rps"])
    return ordered[len(ordered) // 2]


def chart(results, path, threads):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = [s for s in SIZES if any(r["size"] == s and r["threads"] == threads for r in results)]
    proxies = [p for p in PROXIES + STORAGE_SERVERS if any(r["proxy"] == p for r in results)]
    fig, axes = plt.subplots(1, len(sizes), figsize=(5 * len(sizes), 4.5))
    if len(sizes) == 1:
        axes = [axes]
    colours = {"photosrv-random": "#2a9d8f", "photosrv-multihead": "#8ab17d", "nginx": "#e76f51", "haproxy": "#f4a261", "direct": "#bbbbbb",
               "photosrv-storage": "#2a9d8f", "nginx-storage": "#e76f51"}
    for ax, size in zip(axes, sizes):
        rows = [next((r for r in results if r["proxy"] == p and r["size"] == size and r["threads"] == threads), None) for p in proxies]
        values = [r["rps"] if r else 0 for r in rows]
        ax.bar(range(len(proxies)), values, color=[colours[p] for p in proxies])
        ax.set_xticks(range(len(proxies)))
        ax.set_xticklabels([p.replace("photosrv-", "photosrv\n") for p in proxies], fontsize=8)
        ax.set_title(f"{size} objects, {threads} thread(s)")
        ax.set_ylabel("requests/s (median)")
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:,.0f}", ha="center", va="bottom", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(results):
    lines = ["| threads | size | server | req/s | p50 ms | p99 ms | CPU s / 10k req | of which kernel | machine CPU s / 10k | busy % proxy / rest | TCP segments / req | peak RSS MiB | x nginx | x HAProxy | non-2xx |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        nginx_name = "nginx-storage" if r["proxy"] in STORAGE_SERVERS else "nginx"
        ref = {p: next((x["rps"] for x in results if x["proxy"] == name and x["size"] == r["size"] and x["threads"] == r["threads"]), None)
               for p, name in (("nginx", nginx_name), ("haproxy", "haproxy"))}
        ratio = lambda p: f"{r['rps'] / ref[p]:.2f}" if ref[p] else "-"
        fmt = lambda v, f="{:.2f}": f.format(v) if v is not None else "-"
        lines.append(f"| {r['threads']} | {r['size']} | {r['proxy']} | {r['rps']:,.0f} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | "
                     f"{fmt(r['cpu_s_per_10k'], '{:.3f}')} | {fmt(r.get('kernel_cpu_s_per_10k'), '{:.3f}')} | "
                     f"{fmt(r.get('machine_cpu_s_per_10k'), '{:.3f}')} | {fmt(r.get('proxy_busy_pct'), '{:.0f}')} / {fmt(r.get('rest_busy_pct'), '{:.0f}')} | "
                     f"{fmt(r.get('tcp_segments_per_request'))} | "
                     f"{fmt(r['rss_mib'], '{:.1f}')} | {ratio('nginx')} | {ratio('haproxy')} | {r['non_2xx']} |")
    return "\n".join(lines)


def paired(results):
    """photosrv-random's ratios to nginx and HAProxy round by round: each round measures every
    proxy within a minute, so a ratio taken within a round leaves out the drift between
    rounds that a ratio of medians keeps. Per thread budget and size: throughput and CPU per
    request, each round's ratio and their median."""
    rows = {(r["proxy"], r["size"], r["threads"]): r for r in results}
    lines = ["| threads | size | against | req/s ratio per round | median | CPU per request ratio per round | median |",
             "|---|---|---|---|---|---|---|"]
    for threads in sorted({r["threads"] for r in results}):
        for size in SIZES:
            ours = rows.get(("photosrv-random", size, threads))
            for other in ("nginx", "haproxy"):
                theirs = rows.get((other, size, threads))
                if not ours or not theirs or len(ours["runs"]) != len(theirs["runs"]):
                    continue
                rounds = list(zip(ours["runs"], theirs["runs"]))
                rps = [a["rps"] / b["rps"] for a, b in rounds]
                cpu = [a["cpu_s_per_10k"] / b["cpu_s_per_10k"] for a, b in rounds if a["cpu_s_per_10k"] and b["cpu_s_per_10k"]]
                show = lambda ratios: " / ".join(f"{x:.2f}" for x in ratios)
                cpu_columns = f"{show(cpu)} | {statistics.median(cpu):.2f}" if cpu else "- | -"
                lines.append(f"| {threads} | {size} | {other} | {show(rps)} | {statistics.median(rps):.2f} | {cpu_columns} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def budget(machine, results):
    """The proxies' CPU budget, as a line above the tables: the thread counts the run had."""
    share = machine.get("proxy_cpu_share")
    limit = (f", each limited to {share:g} of a core per thread by a CFS quota: the proxy caps the run"
             if share else "")
    kinds = {1: "1 worker thread pinned to CPU 1 (wrk and the nodes on CPU 0)", 2: "2 threads unpinned"}
    threads = sorted({r["threads"] for r in results})
    return (f"Budget: {', then '.join(kinds.get(t, f'{t} threads') for t in threads)}{limit}. "
            f"{machine['runs']} runs x {machine['duration_s']} s, {machine['connections']} connections, median by req/s.")


def targets(results, cpus):
    """The issue's targets, checked on the 1-thread rows of a router run: each with what
    photosrv reached and what it needed. Beside the throughput targets, the most this
    machine could serve through photosrv at the cost per request it had in the same run,
    with every core busy (cores / machine CPU per request). Where the target lies above that,
    no tuning of the split between processes reaches it, only less work per request: the
    last column gives the machine CPU per request the target allows, what direct access to a
    node costs (the nodes' and wrk's work, which no proxy removes) and what photosrv cost. A
    proxy may add at most the difference of the first two."""
    rows = {(r["proxy"], r["size"]): r for r in results if r["threads"] == 1}
    if not any(proxy == "photosrv-random" for proxy, _ in rows):
        return ""
    lines = ["| target (1 thread) | photosrv | needed | verdict | most at photosrv's cost, all cores busy | machine CPU s / 10k: needed / direct alone / photosrv |",
             "|---|---|---|---|---|---|"]

    def verdict(met):
        return "met" if met else "**not met**"

    def throughput(size, factor):
        ours = rows.get(("photosrv-random", size))
        others = [rows[(p, size)] for p in ("nginx", "haproxy") if (p, size) in rows]
        if not ours or not others:
            return
        best = max(others, key=lambda r: r["rps"])
        needed = factor * best["rps"]
        cost = ours.get("machine_cpu_s_per_10k")
        most = f"{cpus * 10000 / cost:,.0f}" if cost else "-"
        direct = rows.get(("direct", size), {}).get("machine_cpu_s_per_10k")
        cost_needed = (f"{cpus * 10000 / needed:.3f} / {direct:.3f} / {cost:.3f}" if cost and direct else "-")
        lines.append(f"| {size} req/s >= {factor}x the better ({best['proxy']}) | {ours['rps']:,.0f} "
                     f"({ours['rps'] / best['rps']:.2f}x) | {needed:,.0f} | {verdict(ours['rps'] >= needed)} | "
                     f"{most} | {cost_needed} |")

    throughput("4k", 1.2)
    ours, others = rows.get(("photosrv-random", "4k")), [rows[(p, "4k")] for p in ("nginx", "haproxy") if (p, "4k") in rows]
    if ours and others:
        cheapest = min(others, key=lambda r: r["cpu_s_per_10k"])
        ratio = ours["cpu_s_per_10k"] / cheapest["cpu_s_per_10k"]
        lines.append(f"| 4k CPU per request <= 0.8x the cheaper ({cheapest['proxy']}) | {ours['cpu_s_per_10k']:.3f} ({ratio:.2f}x; kernel {ours['kernel_cpu_s_per_10k']:.3f}) | "
                     f"{0.8 * cheapest['cpu_s_per_10k']:.3f} | {verdict(ratio <= 0.8)} | - | - |")
        fastest = min(others, key=lambda r: r["p99_ms"])
        lines.append(f"| 4k p99 no worse than the better ({fastest['proxy']}) | {ours['p99_ms']} ms | {fastest['p99_ms']} ms | "
                     f"{verdict(ours['p99_ms'] <= fastest['p99_ms'])} | - | - |")
    throughput("256k", 1.5)
    throughput("4m", 1.5)
    ours_rss = [r["rss_mib"] for (proxy, _), r in rows.items() if proxy.startswith("photosrv") and r["rss_mib"]]
    all_rss = [r["rss_mib"] for r in results if r["proxy"].startswith("photosrv") and r["rss_mib"]]
    if ours_rss:
        lines.append(f"| peak RSS < 64 MiB throughout | {max(ours_rss):.1f} MiB (any thread count: {max(all_rss):.1f}) | < 64 | "
                     f"{verdict(max(all_rss) < 64)} | - | - |")
    for size in SIZES:
        random_row, multihead_row = rows.get(("photosrv-random", size)), rows.get(("photosrv-multihead", size))
        if random_row and multihead_row:
            ratio = multihead_row["rps"] / random_row["rps"]
            lines.append(f"| {size} multihead >= 0.5x random | {ratio:.2f}x | 0.5x | {verdict(ratio >= 0.5)} | - | - |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 run x 5 s")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--suite", choices=["router", "storage"], default="router",
                        help="router: proxies in front of 4 nodes; storage: photosrv storage vs nginx serving the same files")
    parser.add_argument("--sizes", default=None, help="default: 4k,256k,4m (router), 4k,1m (storage)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--proxies", default=None, help="default: every proxy (router) or server (storage) of the suite")
    parser.add_argument("--photosrv", default=str(ROOT / "target/release/photosrv"),
                        help="the photosrv binary (another build, for an A/B)")
    parser.add_argument("--proxy-cpu", type=float, metavar="SHARE",
                        help="limit each proxy to SHARE of a core per thread (e.g. 0.5; a cgroup CPU quota, needs root), "
                             "so that the proxy, not the nodes' and wrk's core, caps the run")
    parser.add_argument("--out", default=str(ROOT / "bench/results" / time.strftime("%Y%m%d-%H%M%S")))
    parser.add_argument("--report", metavar="RESULTS_JSON",
                        help="measure nothing: print the table and the targets of an earlier run's results.json")
    args = parser.parse_args()
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        print(budget(saved["machine"], saved["results"]))
        print()
        print(table(saved["results"]))
        print()
        print(targets(saved["results"], saved["machine"]["cpus"]))
        print()
        print(paired(saved["results"]))
        return
    if args.sizes is None:
        args.sizes = "4k,256k,4m" if args.suite == "router" else "4k,1m"
    if args.proxies is None:
        args.proxies = ",".join(PROXIES if args.suite == "router" else STORAGE_SERVERS)
    if args.quick:
        args.runs, args.duration = 1, 5
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    photosrv = args.photosrv
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu_limit = CpuLimit(args.proxy_cpu) if args.proxy_cpu else None
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="photosrv-bench"))
    # nginx started as root runs its workers as nobody: they must be able to read the files.
    os.chmod(work, 0o755)
    results = []
    try:
        nodes = start_nodes(procs, work, nginx)
        keys = store_dataset(work, nodes, args.sizes.split(","))
        for threads in [int(t) for t in args.threads.split(",")]:
            # Every proxy runs for the whole budget (idle ones cost nothing), and each round
            # measures each of them once: the machine's drift hits all of them alike.
            started = []
            try:
                for proxy in args.proxies.split(","):
                    started.append((proxy, *start_proxy(procs, work, proxy, threads, nodes, nginx, haproxy, photosrv, cpu_limit)))
                for size in args.sizes.split(","):
                    script = wrk_script(work, size, keys[size])
                    runs = {proxy: [] for proxy, _, _ in started}
                    for round_index in range(args.runs):
                        # Each round starts one proxy later, so that a drift within a round
                        # (the fifteenth session's run drifted against whoever went first)
                        # does not always favour the same proxy.
                        shift = round_index % len(started)
                        for position, (proxy, proc, port) in enumerate(started[shift:] + started[:shift]):
                            run = measure(proc, port, script, args.duration, args.connections, [n["pid"] for n in nodes])
                            runs[proxy].append(dict(run, round=round_index, position=position))
                    for proxy, _, _ in started:
                        row = dict(median_run(runs[proxy]), proxy=proxy, size=size, threads=threads, runs=runs[proxy])
                        if row["non_2xx"]:
                            print(f"WARNING: {proxy} {size}: {row['non_2xx']} non-2xx responses: this row is not a result", file=sys.stderr)
                        results.append(row)
                        print(f"threads={threads} {size:>5} {proxy:<19} {row['rps']:>10,.0f} req/s  p50 {row['p50_ms']} ms  p99 {row['p99_ms']} ms  "
                              f"cpu/10k {row['cpu_s_per_10k']} (kernel {row['kernel_cpu_s_per_10k']}, machine {row['machine_cpu_s_per_10k']})  busy {row['proxy_busy_pct']} / {row['rest_busy_pct']} %  rss {row['rss_mib']} MiB  non-2xx {row['non_2xx']}", flush=True)
            finally:
                for _, proc, _ in started:
                    if proc:
                        procs.stop(proc)
    finally:
        procs.stop_all()
        if cpu_limit:
            cpu_limit.remove()
        shutil.rmtree(work, ignore_errors=True)
    machine = {"cpus": os.cpu_count(), "kernel": os.uname().release, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
               "runs": args.runs, "duration_s": args.duration, "connections": args.connections,
               "proxy_cpu_share": args.proxy_cpu}
    (out / "results.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    report = "\n\n".join([budget(machine, results), table(results), targets(results, machine["cpus"]), paired(results)])
    (out / "results.md").write_text(report + "\n")
    print()
    print(report)
    try:
        for threads in sorted({r["threads"] for r in results}):
            chart(results, out / f"chart-{threads}thread.png", threads)
    except ImportError:
        print("matplotlib not installed: no chart", file=sys.stderr)
    print(f"\nresults in {out}")


if __name__ == "__main__":
    main()
