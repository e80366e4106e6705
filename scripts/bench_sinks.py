#!/usr/bin/env python3
"""Benchmark: local directory -> flowgate -> rsyslog over TCP and TLS, and -> Kafka (tansu).

Generates one NSG Version 2 PT1H.json of --mib MiB, then for each mode runs flowgate until
the receiver has every event, and prints one JSON line: events, wall seconds, flowgate's
own CPU seconds (user+sys), events per second, events per CPU-second, microseconds of
flowgate CPU per event, peak RSS. The receivers share the machine: compare CPU, not wall.

rsyslog parses every message (RFC 5424) and writes one byte per message to a file (so
the count is the file's size). Kafka: a tansu broker in memory, 3 partitions; the count
comes from consuming the topic with confluent-kafka (--kafka-python: a Python
that has it, e.g. a venv with `pip install confluent-kafka==2.16.1`).

  cargo build --release -p flowgate
  python3 scripts/bench_sinks.py --mib 64 --kafka-python /tmp/kvenv/bin/python
      [--extra scripts/bench/enrich-all.toml]   the same with enrichment
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

LAYOUT = ("resourceId=/SUBSCRIPTIONS/5A2F6C1E-8B3D-4E7A-9C2B-0D1E2F3A4B5C/RESOURCEGROUPS/PROD-NETWORK-RG/"
          "PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG-0/y=2024/m=03/d=04/h=10/m=00/"
          "macAddress=000D3A8F7800/PT1H.json")

CERTS = r"""
set -e
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca -keyout ca.key -out ca.pem \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext \
  -out server.pem 2>/dev/null
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=15):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def measure(cmd, done, timeout, stdin=None):
    """Runs cmd until done() is true, then stops it with SIGTERM; a command given `stdin`
    is left to exit by itself. Returns (wall seconds until done, user, sys, maxrss MiB)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finished = ru = None
    while ru is None and time.monotonic() - start < timeout:
        if finished is None and done():
            finished = time.monotonic()
            if stdin is None:
                proc.send_signal(signal.SIGTERM)
        pid, _, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            ru = usage
        else:
            time.sleep(0.05)
    if ru is None:
        proc.send_signal(signal.SIGTERM)
        _, _, ru = os.wait4(proc.pid, 0)
    if finished is None and done():
        finished = time.monotonic()
    if finished is None:
        sys.exit(f"{cmd[0]} did not finish")
    return finished - start, ru.ru_utime, ru.ru_stime, ru.ru_maxrss / 1024


def report(mode, events, wall, user, sys_, rss):
    cpu = user + sys_
    print(json.dumps({"sink": mode, "events": events, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                      "user_s": round(user, 2), "sys_s": round(sys_, 2),
                      "events_per_s": round(events / wall), "events_per_cpu_s": round(events / cpu),
                      "cpu_us_per_event": round(cpu / events * 1e6, 2), "peak_rss_mib": round(rss, 1)}),
          flush=True)


EXTRA = ""


def flowgate_config(work, sink):
    return f"""[sources.local]
type = "local"
path = "{work}/logs"
poll_interval_secs = 0.5

[sinks.out]
{sink}

[checkpoints]
path = "{work}/cp-{time.monotonic_ns()}.redb"

{EXTRA}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--modes", default="tcp,tls,kafka")
    ap.add_argument("--bin", default="target/release/flowgate")
    ap.add_argument("--rsyslogd", default="/usr/sbin/rsyslogd")
    ap.add_argument("--tansu", default=".peers/tansu/bin/tansu")
    ap.add_argument("--kafka-python", default=None)
    ap.add_argument("--timeout", type=float, default=900)
    ap.add_argument("--extra", help="TOML tables appended to flowgate's config ([enrich], ...)")
    a = ap.parse_args()
    global EXTRA
    EXTRA = open(a.extra).read() if a.extra else ""
    bin_ = os.path.abspath(a.bin)

    work = tempfile.mkdtemp(prefix="flowgate-bench-sinks-")
    path = os.path.join(work, "logs", LAYOUT)
    os.makedirs(os.path.dirname(path))
    gen = subprocess.run([bin_, "generate", "--mib", str(a.mib), "--out", path], check=True,
                         capture_output=True, text=True)
    events = json.loads(gen.stdout)["tuples"]
    conf = os.path.join(work, "flowgate.toml")

    modes = a.modes.split(",")
    if {"tcp", "tls"} & set(modes):
        rs = os.path.join(work, "rsyslog")
        os.makedirs(os.path.join(rs, "work"))
        subprocess.run(["sh", "-c", CERTS], cwd=rs, check=True)
        tcp, tls = free_port(), free_port()
        with open(os.path.join(rs, "rsyslog.conf"), "w") as f:
            f.write(f"""global(workDirectory="{rs}/work" maxMessageSize="64k"
  defaultNetstreamDriverCAFile="{rs}/ca.pem" defaultNetstreamDriverCertFile="{rs}/server.pem"
  defaultNetstreamDriverKeyFile="{rs}/server.key")
module(load="imtcp" maxSessions="100")
template(name="one" type="string" string="x")
ruleset(name="count") {{ action(type="omfile" file="{rs}/count" template="one") }}
input(type="imtcp" address="127.0.0.1" port="{tcp}" ruleset="count")
input(type="imtcp" address="127.0.0.1" port="{tls}" ruleset="count"
      streamDriver.name="gtls" streamDriver.mode="1" streamDriver.authMode="anon")
""")
        rsyslogd = subprocess.Popen([a.rsyslogd, "-n", "-f", os.path.join(rs, "rsyslog.conf"), "-i",
                                     os.path.join(rs, "pid")], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        wait_port(tcp)
        wait_port(tls)
        count = os.path.join(rs, "count")
        for mode, port in (("tcp", tcp), ("tls", tls)):
            if mode not in modes:
                continue
            before = os.path.getsize(count) if os.path.exists(count) else 0
            tls_table = f'\n[sinks.out.tls]\nca_file = "{rs}/ca.pem"' if mode == "tls" else ""
            with open(conf, "w") as f:
                f.write(flowgate_config(work, f'type = "syslog"\nmode = "{mode}"\n'
                                              f'targets = ["127.0.0.1:{port}"]{tls_table}'))
            done = lambda: os.path.exists(count) and os.path.getsize(count) - before >= events
            report(mode, events, *measure([bin_, "run", "--config", conf], done, a.timeout))
        rsyslogd.send_signal(signal.SIGTERM)
        rsyslogd.wait()

    if "kafka" in modes:
        if not a.kafka_python:
            sys.exit("kafka: pass --kafka-python (a Python with confluent-kafka)")
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        broker = subprocess.Popen([a.tansu, "broker", "--listener-url", url, "--advertised-listener-url", url,
                                   "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        wait_port(port)
        subprocess.run(["timeout", "30", a.tansu, "topic", "create", "--broker", url, "--partitions", "3",
                        "flows"], check=True, capture_output=True)
        with open(conf, "w") as f:
            f.write(flowgate_config(work, f'type = "kafka"\nbootstrap_servers = "127.0.0.1:{port}"\n'
                                          f'topic = "flows"\nkey = "nsg"\ncompression = "lz4"'))
        # Counts by consuming: tansu's high watermarks were seen to lag behind.
        watcher = subprocess.Popen([a.kafka_python, "-c", f"""
from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
c = Consumer({{"bootstrap.servers": "127.0.0.1:{port}", "group.id": "bench", "enable.auto.commit": False}})
c.assign([TopicPartition("flows", p, OFFSET_BEGINNING) for p in range(3)])
n = 0
while True:
    n += sum(1 for m in c.consume(10000, timeout=0.2) if not m.error())
    print(n, flush=True)
"""], stdout=subprocess.PIPE, text=True)
        seen = [0]

        def follow():
            for line in watcher.stdout:
                seen[0] = int(line)
        threading.Thread(target=follow, daemon=True).start()
        done = lambda: seen[0] >= events
        report("kafka", events, *measure([bin_, "run", "--config", conf], done, a.timeout))
        watcher.kill()
        broker.kill()


if __name__ == "__main__":
    main()
