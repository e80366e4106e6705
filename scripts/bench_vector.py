#!/usr/bin/env python3
"""Benchmark against Vector (the peer of ../shared/peers): the same PT1H.json, CEF over TCP.

Vector reads the document's records from stdin, one JSON record per line (it has no reader
for one large JSON document: the split is done here, before the clock starts, which is in
Vector's favour), flattens every flow tuple to a CEF line in VRL (scripts/bench/vector.toml)
and sends them newline-framed over TCP. flowgate reads the document from a local source
directory and sends CEF newline-framed over TCP without a syslog header. Both go to the
same receiver, which only counts lines. Prints one JSON line per peer (CPU seconds of the
forwarder alone, peak RSS) and the ratio.

  python3 ../shared/peers/gen_v2.py file --size 64MiB --seed 1 --out /tmp/v2.PT1H.json
  cargo build --release -p flowgate
  python3 scripts/bench_vector.py --vector PATH/TO/vector --input /tmp/v2.PT1H.json
"""
import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_sinks import LAYOUT, flowgate_config, free_port, measure, report  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SPLIT = """
import json, sys
with open(sys.argv[1], "rb") as f:
    records = json.load(f)["records"]
with open(sys.argv[2], "w") as f:
    for r in records:
        f.write(json.dumps(r, separators=(",", ":")) + "\\n")
"""


class Receiver:
    """Accepts TCP connections on a free port and counts newline-terminated lines."""

    def __init__(self):
        self.lines = 0
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(8)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            conn, _ = self.server.accept()
            threading.Thread(target=self.read, args=(conn,), daemon=True).start()

    def read(self, conn):
        while True:
            data = conn.recv(1 << 20)
            if not data:
                return
            with self.lock:
                self.lines += data.count(b"\n")

    def count(self):
        with self.lock:
            return self.lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vector", required=True)
    ap.add_argument("--input", required=True, help="a PT1H.json document")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/flowgate"))
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--rounds", type=int, default=1)
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="flowgate-bench-vector-")
    # In child processes: Linux reports a child's peak RSS as at least this process's at the
    # time it started the child, so this one must stay small.
    ndjson = os.path.join(work, "records.ndjson")
    subprocess.run([sys.executable, "-c", SPLIT, a.input, ndjson], check=True)
    convert = subprocess.Popen([a.bin, "convert", a.input], stdout=subprocess.PIPE)
    events = sum(chunk.count(b"\n") for chunk in iter(lambda: convert.stdout.read(1 << 20), b""))
    convert.wait()

    receiver = Receiver()
    logs = os.path.join(work, "logs", os.path.dirname(LAYOUT))
    os.makedirs(logs)
    shutil.copy(a.input, os.path.join(logs, "PT1H.json"))
    with open(os.path.join(ROOT, "scripts/bench/vector.toml")) as f:
        vector_conf = f.read()
    for round_ in range(a.rounds):
        # Vector: stdin from the records; it exits when they are all sent.
        data = os.path.join(work, f"vector-data-{round_}")
        os.makedirs(data)
        conf = os.path.join(work, "vector.toml")
        with open(conf, "w") as f:
            f.write(vector_conf.replace("@PORT@", str(receiver.port)).replace("@DATA@", data))
        before = receiver.count()
        with open(ndjson, "rb") as stdin:
            wall, user, sys_, rss = measure([a.vector, "--quiet", "--config", conf],
                                            lambda: receiver.count() - before >= events, a.timeout,
                                            stdin=stdin)
        report("vector", events, wall, user, sys_, rss)
        vector_cpu = (user + sys_) / events

        # flowgate: the document itself, CEF without a syslog header, newline framing.
        conf = os.path.join(work, "flowgate.toml")
        with open(conf, "w") as f:
            f.write(flowgate_config(work, f'type = "syslog"\nmode = "tcp"\nframing = "newline"\n'
                                          f'targets = ["127.0.0.1:{receiver.port}"]\n'
                                          f'[sinks.out.encoding.syslog]\nkind = "none"'))
        before = receiver.count()
        wall, user, sys_, rss = measure([a.bin, "run", "--config", conf],
                                        lambda: receiver.count() - before >= events, a.timeout)
        report("flowgate", events, wall, user, sys_, rss)
        print(json.dumps({"round": round_, "vector_cpu_per_flowgate_cpu": round(vector_cpu / ((user + sys_) / events), 1)}),
              flush=True)


if __name__ == "__main__":
    main()
