#!/usr/bin/env python3
"""Benchmark: what a restart costs over a container with a long retention.

Fills a fresh Azurite with N one-record blobs (50 NSGs x N/50 hours, each a finished
PT1H.json of one tuple), lets flowgate (azure_blob source, file sink, local checkpoints)
forward them all, stops it, and starts it again. Prints one JSON line per N: the first run's
wall time and peak RSS, and for the restart the time until its first poll is done (listing
plus whatever it reads), its storage requests (listing pages, range reads) and its peak RSS,
which is the RSS of following N blobs.

  cargo build --release -p flowgate
  python3 scripts/bench_restart.py --blobs 20000,100000
"""
import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from email.utils import formatdate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_azure import free_port, start_azurite  # noqa: E402

ACCOUNT = "devstoreaccount1"
KEY = base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
CONTAINER = "insights-logs-networksecuritygroupflowevent"


def put(conn, path, body, query=""):
    """A Shared Key signed PUT (Azure's 2009+ scheme), on a kept-alive connection."""
    date = formatdate(usegmt=True)
    headers = {"x-ms-date": date, "x-ms-version": "2021-08-06", "Content-Length": str(len(body))}
    if not query:
        headers["x-ms-blob-type"] = "BlockBlob"
    canon_headers = "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()) if k.startswith("x-ms-"))
    resource = f"/{ACCOUNT}/{ACCOUNT}{path}"
    if query:
        resource += "".join(f"\n{k}:{v}" for k, v in sorted(p.split("=") for p in query.split("&")))
    length = str(len(body)) if body else ""
    to_sign = f"PUT\n\n\n{length}\n\n\n\n\n\n\n\n\n{canon_headers}{resource}"
    sig = base64.b64encode(hmac.new(KEY, to_sign.encode(), hashlib.sha256).digest()).decode()
    headers["Authorization"] = f"SharedKey {ACCOUNT}:{sig}"
    url = f"/{ACCOUNT}{path}" + (f"?{query}" if query else "")
    conn.request("PUT", url, body=body, headers=headers)
    r = conn.getresponse()
    r.read()
    if r.status not in (201, 409):
        sys.exit(f"PUT {path}: {r.status}")


def record(n):
    return ('{"time":"2024-03-04T10:00:00.0000000Z","systemId":"s","macAddress":"000D3A000001",'
            '"category":"NetworkSecurityGroupFlowEvent","resourceId":"/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/'
            'PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG","operationName":'
            '"NetworkSecurityGroupFlowEvents","properties":{"Version":2,"flows":[{"rule":"R","flows":'
            '[{"mac":"000D3A000001","flowTuples":["1709546400,10.0.%d.%d,10.1.0.1,%d,443,T,I,A,B,,,,"]}]}]}}'
            % (n // 250 % 250, n % 250, 1024 + n // 62500))


def blob_name(i, hours):
    nsg, hour = divmod(i, hours)
    t = time.gmtime(1704067200 + 3600 * hour)  # from 2024-01-01
    return (f"/{CONTAINER}/resourceId=/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/"
            f"NETWORKSECURITYGROUPS/NSG-{nsg:02}/y={t.tm_year}/m={t.tm_mon:02}/d={t.tm_mday:02}/"
            f"h={t.tm_hour:02}/m=00/macAddress=000D3A000001/PT1H.json")


def fill(port, blobs, threads=16):
    conn = http.client.HTTPConnection("127.0.0.1", port)
    put(conn, f"/{CONTAINER}", b"", "restype=container")
    hours = blobs // 50

    def work(k):
        c = http.client.HTTPConnection("127.0.0.1", port)
        for i in range(k, blobs, threads):
            put(c, blob_name(i, hours), ('{"records":[%s]}' % record(i)).encode())
    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def metrics(api):
    try:
        c = http.client.HTTPConnection("127.0.0.1", api, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            name = series.split("{")[0]
            out[name] = out.get(name, 0.0) + float(value)
            out[series] = float(value)
    return out


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def lines(path):
    if not os.path.exists(path):
        return 0
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 22), b""))


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--blobs", default="20000,100000")
    ap.add_argument("--bin", default="target/release/flowgate")
    a = ap.parse_args()
    azurite = subprocess.check_output(["scripts/azurite-deps.sh"], text=True).strip()
    for blobs in [int(b) for b in a.blobs.split(",")]:
        work = tempfile.mkdtemp(prefix="flowgate-bench-restart-")
        az, port = start_azurite(azurite, os.path.join(work, "azurite"))
        try:
            t = time.monotonic()
            fill(port, blobs)
            fill_s = time.monotonic() - t
            api = free_port()
            out = os.path.join(work, "out.cef")
            config = os.path.join(work, "flowgate.toml")
            with open(config, "w") as f:
                f.write(f"""
[sources.azure]
type = "azure_blob"
use_emulator = true
endpoint = "http://127.0.0.1:{port}/devstoreaccount1"
poll_interval_secs = 1.0

[sinks.file]
type = "file"
path = "{out}"
fsync = false

[checkpoints]
path = "{work}/cp.redb"

[api]
address = "127.0.0.1:{api}"

[log]
level = "warn"
""")
            t = time.monotonic()
            fg = subprocess.Popen([a.bin, "run", "--config", config])
            while lines(out) < blobs:
                time.sleep(0.2)
            first_s = time.monotonic() - t
            first_rss = peak_rss_mib(fg.pid)
            time.sleep(2)
            stop(fg)

            t = time.monotonic()
            fg = subprocess.Popen([a.bin, "run", "--config", config])
            while metrics(api).get("flowgate_source_poll_duration_seconds_count", 0) < 1:
                time.sleep(0.02)
            settled_s = time.monotonic() - t
            m = metrics(api)
            restart = {"settled_s": round(settled_s, 2),
                       "list_requests": m.get("flowgate_source_list_requests_total", 0),
                       "range_reads": m.get("flowgate_source_reads_total", 0),
                       "peak_rss_mib": round(peak_rss_mib(fg.pid), 1)}
            stop(fg)
            print(json.dumps({"blobs": blobs, "fill_s": round(fill_s, 1),
                              "first_run": {"wall_s": round(first_s, 1), "peak_rss_mib": round(first_rss, 1)},
                              "restart": restart, "delivered": lines(out)}), flush=True)
        finally:
            az.send_signal(signal.SIGTERM)
            az.wait()
            subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
