#!/usr/bin/env python3
"""End-to-end benchmark: `flowgate run`, local directory source -> file sink (fsync on).

Generates --files PT1H.json blobs of --mib MiB each (NSG Version 2, seeded) in the
container's layout, runs flowgate until every tuple is in the output file, stops it with
SIGTERM and prints one JSON line: tuples, wall seconds, flowgate's CPU seconds (user+sys),
tuples per second, tuples per CPU-second, peak RSS (MiB).

  cargo build --release -p flowgate
  python3 scripts/bench_e2e.py --mib 64 --files 4 [--format cef] [--bin target/release/flowgate]
      [--extra FILE.toml]   TOML tables added to the config ([enrich], [volume], [filter])
      [--no-fsync] [--devnull]

Completion is read from flowgate's own /metrics (events sent = tuples generated), so
it works whatever the output looks like (enriched or not).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

LAYOUT = ("resourceId=/SUBSCRIPTIONS/5A2F6C1E-8B3D-4E7A-9C2B-0D1E2F3A4B5C/RESOURCEGROUPS/PROD-NETWORK-RG/"
          "PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG-{i}/y=2024/m=03/d=04/h=10/m=00/"
          "macAddress=000D3A8F78{i:02d}/PT1H.json")


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sent(port):
    """flowgate_sink_events_sent_total, 0 until the endpoint answers."""
    import urllib.request
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
               if l.startswith("flowgate_sink_events_sent_total"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--format", default="cef")
    ap.add_argument("--bin", default="target/release/flowgate")
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--extra", help="TOML tables appended to the config")
    ap.add_argument("--no-fsync", action="store_true")
    ap.add_argument("--out", help="keep the output in this file (to look at it)")
    ap.add_argument("--devnull", action="store_true",
                    help="write to /dev/null: flowgate's own CPU, without the page cache's")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="flowgate-bench-")
    tuples = 0
    for i in range(a.files):
        path = os.path.join(work, "logs", LAYOUT.format(i=i))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        info = json.loads(subprocess.check_output(
            [a.bin, "generate", "--mib", str(a.mib), "--seed", str(i + 1), "--out", path]))
        tuples += info["tuples"]
    out = "/dev/null" if a.devnull else a.out or os.path.join(work, "out.log")
    extra = open(a.extra).read() if a.extra else ""
    port = free_port()
    config = os.path.join(work, "flowgate.toml")
    with open(config, "w") as f:
        f.write(f"""
[sources.bench]
type = "local"
path = "{work}/logs"
poll_interval_secs = 0.2

[sinks.file]
type = "file"
path = "{out}"
fsync = {"false" if a.no_fsync or a.devnull else "true"}

[sinks.file.encoding]
format = "{a.format}"

[checkpoints]
path = "{work}/cp.redb"

[log]
level = "warn"

[api]
address = "127.0.0.1:{port}"

{extra}
""")
    start = time.monotonic()
    wrapper = os.environ.get("FLOWGATE_BENCH_WRAP", "").split()
    proc = subprocess.Popen(wrapper + [a.bin, "run", "--config", config], stdout=subprocess.DEVNULL)
    done = None
    while time.monotonic() - start < a.timeout:
        if sent(port) >= tuples:
            done = time.monotonic()
            break
        if proc.poll() is not None:
            sys.exit("flowgate exited early")
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, status, ru = os.wait4(proc.pid, 0)
    if done is None:
        sys.exit("timed out")
    wall = done - start
    cpu = ru.ru_utime + ru.ru_stime
    print(json.dumps({
        "files": a.files, "mib_per_file": a.mib, "format": a.format, "tuples": tuples,
        "output_bytes": os.path.getsize(out), "extra": a.extra, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        "tuples_per_s": round(tuples / wall), "tuples_per_cpu_s": round(tuples / cpu),
        "user_s": round(ru.ru_utime, 3), "sys_s": round(ru.ru_stime, 3),
        "peak_rss_mib": round(ru.ru_maxrss / 1024, 1), "exit": os.waitstatus_to_exitcode(status),
    }))
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
