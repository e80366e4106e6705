#!/usr/bin/env python3
"""Benchmark: Azurite backlog -> flowgate (azure_blob source) -> file sink, and the Python
peer (../shared/peers/pyforwarder.py azure, CEF over TCP to a discarding receiver) on the
same blobs in the same session.

Fills a fresh Azurite with `flowgate simulate` (Network Watcher style block blobs), then
runs each reader until it has forwarded every tuple, and prints one JSON line per run:
tuples, wall seconds, the reader's own CPU seconds (user+sys), tuples per CPU-second and
peak RSS. Azurite (Node) shares the machine, so compare CPU-seconds, not wall time.

  cargo build --release -p flowgate
  python3 scripts/bench_azure.py --nsgs 60 --macs 2 --intervals 300    # about 1.1 GiB
  python3 scripts/bench_azure.py ... --peer-python /tmp/azvenv/bin/python   # with the peer

Storage latency: `--delay-ms 0,20` puts tests/tools/tcp_proxy.py in front of Azurite, adding
that much to every request, and `--concurrent-reads 1,8` runs flowgate with each
`max_concurrent_reads`: every combination is run on the same blobs (the peer with the
largest delay). Sequential reads (1) are what flowgate did before concurrent reads.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_azurite(azurite, data):
    port = free_port()
    proc = subprocess.Popen([azurite, "--blobHost", "127.0.0.1", "--blobPort", str(port), "--location", data,
                             "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        if "successfully listens" in line:
            break
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, port


def measure(cmd, done, timeout):
    """Runs cmd until done() is true; returns (wall, cpu, user, sys, maxrss MiB)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    finished = None
    while time.monotonic() - start < timeout:
        if done():
            finished = time.monotonic()
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, _, ru = os.wait4(proc.pid, 0)
    if finished is None:
        sys.exit(f"{cmd[0]} did not finish (exit {proc.returncode})")
    return finished - start, ru.ru_utime + ru.ru_stime, ru.ru_utime, ru.ru_stime, ru.ru_maxrss / 1024


def report(name, tuples, wall, cpu, user, sys_, rss):
    print(json.dumps({"reader": name, "tuples": tuples, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                      "user_s": round(user, 2), "sys_s": round(sys_, 2),
                      "tuples_per_s": round(tuples / wall), "tuples_per_cpu_s": round(tuples / cpu),
                      "peak_rss_mib": round(rss, 1)}), flush=True)


def tcp_receiver():
    """A TCP server that counts newline-framed messages and discards them: (port, [count])."""
    received = [0]
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)

    def serve(conn):
        while True:
            data = conn.recv(1 << 20)
            if not data:
                break
            received[0] += data.count(b"\n")

    def accept():
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    return srv.getsockname()[1], received


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nsgs", type=int, default=10)
    ap.add_argument("--macs", type=int, default=2)
    ap.add_argument("--intervals", type=int, default=60)
    ap.add_argument("--bin", default="target/release/flowgate")
    ap.add_argument("--fsync", choices=["true", "false"], default="true",
                    help="the file sink's fsync after every batch (its kernel time is flowgate's CPU)")
    ap.add_argument("--sink", choices=["file", "tcp"], default="file",
                    help="flowgate's sink: a file, or newline-framed CEF over TCP to a discarding "
                         "receiver (what the Python peer sends)")
    ap.add_argument("--peer-python", help="a Python with azure-storage-blob, to run pyforwarder.py azure")
    ap.add_argument("--peers-dir", default=os.path.join(os.path.dirname(__file__), "../../shared/peers"))
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--delay-ms", default="0", help="comma-separated latencies added to every request")
    ap.add_argument("--concurrent-reads", default="8", help="comma-separated max_concurrent_reads")
    a = ap.parse_args()

    azurite = subprocess.check_output(["scripts/azurite-deps.sh"], text=True).strip()
    work = tempfile.mkdtemp(prefix="flowgate-bench-azure-")
    proc, port = start_azurite(azurite, os.path.join(work, "azurite"))
    proxies = {}
    try:
        endpoint = f"http://127.0.0.1:{port}/devstoreaccount1"
        config = os.path.join(work, "flowgate.toml")
        out = os.path.join(work, "out.cef")
        flowgate_rx = None
        if a.sink == "tcp":
            flowgate_rx = tcp_receiver()
            sink_config = (f'[sinks.siem]\ntype = "syslog"\nmode = "tcp"\nframing = "newline"\n'
                           f'targets = ["127.0.0.1:{flowgate_rx[0]}"]\n'
                           f'[sinks.siem.encoding.syslog]\nkind = "none"')
        else:
            sink_config = f'[sinks.file]\ntype = "file"\npath = "{out}"\nfsync = {a.fsync}'
        def write_config(endpoint, reads, run):
            with open(config, "w") as f:
                f.write(f"""
[sources.azurite]
type = "azure_blob"
use_emulator = true
endpoint = "{endpoint}"
poll_interval_secs = 1.0
full_listing_interval_secs = 1.0
max_concurrent_reads = {reads}

{sink_config}

[checkpoints]
path = "{work}/cp-{run}.redb"

[log]
level = "warn"
""")
        write_config(endpoint, 8, "fill")
        t = time.monotonic()
        summary = json.loads(subprocess.check_output(
            [a.bin, "simulate", "--config", config, "--source", "azurite", "--nsgs", str(a.nsgs),
             "--macs", str(a.macs), "--intervals", str(a.intervals), "--interval-secs", "0",
             "--start", "1709546400"]))
        size = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(os.path.join(work, "azurite"))
                   for n in ns)
        print(json.dumps({"backlog": summary, "azurite_bytes_on_disk": size,
                          "fill_s": round(time.monotonic() - t, 1)}), flush=True)
        tuples = summary["tuples"]

        delays = [int(d) for d in a.delay_ms.split(",")]

        def endpoint_with(delay):
            if delay == 0:
                return endpoint
            if delay not in proxies:
                pport = free_port()
                pp = subprocess.Popen([sys.executable, "tests/tools/tcp_proxy.py", "--listen-port", str(pport),
                                       "--target-port", str(port), "--delay-ms", str(delay)],
                                      stdout=subprocess.PIPE, text=True)
                pp.stdout.readline()
                proxies[delay] = (pp, pport)
            return f"http://127.0.0.1:{proxies[delay][1]}/devstoreaccount1"

        for delay in delays:
            for reads in [int(r) for r in a.concurrent_reads.split(",")]:
                run = f"{delay}ms-{reads}"
                write_config(endpoint_with(delay), reads, run)
                name = f"flowgate, {delay} ms per request, max_concurrent_reads={reads}"
                if flowgate_rx:
                    flowgate_rx[1][0] = 0
                    report(name + " -> TCP", tuples,
                           *measure([a.bin, "run", "--config", config], lambda: flowgate_rx[1][0] >= tuples,
                                    a.timeout))
                else:
                    if os.path.exists(out):
                        os.remove(out)
                    seen = {"offset": 0, "lines": 0}

                    def flowgate_done():
                        # One line per tuple: count the newlines of what was appended since.
                        if not os.path.exists(out):
                            return False
                        with open(out, "rb") as fh:
                            fh.seek(seen["offset"])
                            for chunk in iter(lambda: fh.read(1 << 22), b""):
                                seen["lines"] += chunk.count(b"\n")
                                seen["offset"] += len(chunk)
                        return seen["lines"] >= tuples
                    report(f"{name} -> file (fsync={a.fsync})", tuples,
                           *measure([a.bin, "run", "--config", config], flowgate_done, a.timeout))

        if a.peer_python:
            port, received = tcp_receiver()
            conn = (f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};"
                    f"BlobEndpoint={endpoint_with(max(delays))};")
            cmd = [a.peer_python, os.path.join(a.peers_dir, "pyforwarder.py"), "azure", "--conn", conn,
                   "--tcp", f"127.0.0.1:{port}", "--state", os.path.join(work, "py-state.json")]
            report(f"pyforwarder azure, {max(delays)} ms per request -> TCP", tuples, *measure(cmd, lambda: received[0] >= tuples, a.timeout))
    finally:
        for pp, _ in proxies.values():
            pp.terminate()
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
