#!/usr/bin/env python3
"""Peak memory with the worst records the defaults accept (issue 15).

For each shape, one PT1H.json holding a small record, one hostile record of
--record-mib MiB (just under the default max_record_bytes of 64 MiB) and a tail of
normal records; `flowgate run` (local source, --sinks file sinks) reads it to the end,
and the peak RSS (VmHWM) is printed as one JSON line per shape.

Shapes:
  tiny_tuples       the shortest valid Version 1 tuple, repeated: the most events per byte
  empty_tuples      "" repeated: a tuple error per 3 bytes
  empty_mac_flows   {} repeated in one rule's flows (NSG)
  empty_rule_flows  {} repeated in properties.flows (NSG)
  vnet_groups       {} repeated in one ACL's flowGroups (VNet)
  control_fields    a 4096-byte rule of control characters (each escaped in CEF), then
                    normal records: the encoder's reservation for the next batch

  cargo build --release -p flowgate
  python3 scripts/bench_memory.py [--shapes a,b] [--record-mib 63] [--sinks 2] [--bin PATH]
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

PATH = ("resourceId=/SUBSCRIPTIONS/5A2F6C1E-8B3D-4E7A-9C2B-0D1E2F3A4B5C/RESOURCEGROUPS/RG/"
        "PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG-1/y=2024/m=03/d=04/h=10/m=00/"
        "macAddress=000D3A8F7801/PT1H.json")
RID = "/SUBSCRIPTIONS/S/RESOURCEGROUPS/RG/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/NSG-1"
TUPLE = "1709546400,10.0.0.4,10.0.0.5,40000,443,T,I,A,B,,,,"
TINY = "1,1.1.1.1,1.1.1.1,1,1,T,I,A"


def nsg(version, rule_flows):
    return ('{"time":"2024-03-04T10:00:00.0000000Z","systemId":"x","category":"NetworkSecurityGroupFlowEvent",'
            f'"resourceId":"{RID}","operationName":"NetworkSecurityGroupFlowEvents",'
            f'"properties":{{"Version":{version},"flows":{rule_flows}}}}}')


def tuples_record(version, tuples, rule="R"):
    return nsg(version, '[{"rule":"%s","flows":[{"mac":"000D3AF87856","flowTuples":[%s]}]}]'
               % (rule, ",".join(f'"{t}"' for t in tuples)))


def repeat(unit, size):
    return ",".join([unit] * (size // (len(unit) + 1)))


def hostile(shape, size):
    """The hostile record and how many events it yields."""
    if shape == "tiny_tuples":
        n = size // (len(TINY) + 3)
        return tuples_record(1, [TINY] * n), n
    if shape == "empty_tuples":
        return nsg(2, '[{"rule":"R","flows":[{"mac":"000D3AF87856","flowTuples":[%s]}]}]'
                   % repeat('""', size)), 0
    if shape == "empty_mac_flows":
        return nsg(2, '[{"rule":"R","flows":[%s]}]' % repeat("{}", size)), 0
    if shape == "empty_rule_flows":
        return nsg(2, "[%s]" % repeat("{}", size)), 0
    if shape == "vnet_groups":
        return ('{"time":"2024-03-04T10:00:00.000Z","flowLogVersion":4,"flowLogGUID":"g",'
                '"macAddress":"000D3AF87856","category":"FlowLogFlowEvent",'
                f'"flowLogResourceID":"{RID}","targetResourceID":"{RID}",'
                '"flowRecords":{"flows":[{"aclID":"a","flowGroups":[%s]}]}}' % repeat("{}", size)), 0
    if shape == "control_fields":
        return tuples_record(2, [TUPLE], rule="\\u0001" * 4096), 1
    raise SystemExit(f"unknown shape {shape}")


def metric(port, name):
    import urllib.request
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(name))


def vm_hwm(pid):
    """The process's peak resident set (kB), 0 once it is gone. Not getrusage: a forked
    child's ru_maxrss starts at the parent's peak."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(a, shape):
    work = tempfile.mkdtemp(prefix="flowgate-mem-")
    path = os.path.join(work, "logs", PATH)
    os.makedirs(os.path.dirname(path))
    record, events = hostile(shape, a.record_mib << 20)
    # 4 MiB of normal records after it: 1,000 tuples each.
    tail = [tuples_record(2, [TUPLE] * 1000)] * max(1, (4 << 20) // (1000 * (len(TUPLE) + 3)))
    records = [tuples_record(2, [TUPLE]), record] + tail
    events += 1 + 1000 * len(tail)
    with open(path, "w") as f:
        f.write('{"records":[' + ",".join(records) + "]}")
    hostile_mib = round(len(record) / (1 << 20), 1)
    del record, records, tail  # a forked child starts with the parent's peak RSS
    port = free_port()
    sinks = "".join(f"""
[sinks.out{i}]
type = "file"
path = "/dev/null"
fsync = false
[sinks.out{i}.encoding]
format = "cef"
""" for i in range(a.sinks))
    config = os.path.join(work, "flowgate.toml")
    with open(config, "w") as f:
        f.write(f"""
[sources.mem]
type = "local"
path = "{work}/logs"
poll_interval_secs = 0.2
{sinks}
[checkpoints]
path = "{work}/cp.redb"
[log]
level = "error"
[api]
address = "127.0.0.1:{port}"
""")
    start = time.monotonic()
    proc = subprocess.Popen([a.bin, "run", "--config", config], stdout=subprocess.DEVNULL)
    done = False
    hwm = 0
    while time.monotonic() - start < a.timeout:
        hwm = max(hwm, vm_hwm(proc.pid))
        if metric(port, "flowgate_sink_events_sent_total") >= events * a.sinks:
            done = True
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    wall = time.monotonic() - start
    hwm = max(hwm, vm_hwm(proc.pid))
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, status, ru = os.wait4(proc.pid, 0)
    print(json.dumps({
        "shape": shape, "record_mib": hostile_mib, "sinks": a.sinks,
        "events": events, "done": done, "exit": os.waitstatus_to_exitcode(status),
        "wall_s": round(wall, 2), "peak_rss_mib": round(hwm / 1024, 1),
    }), flush=True)
    subprocess.run(["rm", "-rf", work])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="tiny_tuples,empty_tuples,empty_mac_flows,empty_rule_flows,vnet_groups,control_fields")
    ap.add_argument("--record-mib", type=int, default=63)
    ap.add_argument("--sinks", type=int, default=2)
    ap.add_argument("--bin", default="target/release/flowgate")
    ap.add_argument("--timeout", type=float, default=300)
    a = ap.parse_args()
    for shape in a.shapes.split(","):
        run(a, shape)


if __name__ == "__main__":
    main()
