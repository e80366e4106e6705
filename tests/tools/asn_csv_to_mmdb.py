#!/usr/bin/env python3
"""Convert ip-location-db ASN CSV files into one GeoLite2-ASN-style MMDB database.

Usage: asn_csv_to_mmdb.py OUT.mmdb asn-ipv4.csv [asn-ipv6.csv ...]

Input rows (the @ip-location-db/asn package's asn-ipv4.csv / asn-ipv6.csv, no header):
    ip_range_start,ip_range_end,autonomous_system_number,autonomous_system_organization
with inclusive ranges of textual addresses. Output records are MaxMind's GeoLite2-ASN ones,
{"autonomous_system_number": uint32, "autonomous_system_organization": str}, in an IPv6
database that holds the IPv4 ranges too (see make_mmdb.py). Where ranges overlap, the later
row wins. The result is read back and a sample of rows checked.
"""

import argparse
import csv
import random
import sys
import time

from make_mmdb import Writer
from netaddr import IPAddress, IPNetwork, iprange_to_cidrs


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output .mmdb")
    ap.add_argument("csv", nargs="+", help="ASN CSV files (textual addresses)")
    args = ap.parse_args()

    started = time.monotonic()
    networks = {}  # IPNetwork -> record; a later row replaces an earlier one
    records = {}  # (asn, org) -> the one record dict, so the data section is shared
    rows = []
    replaced = 0
    for path in args.csv:
        with open(path, newline="", encoding="utf-8") as f:
            for lineno, row in enumerate(csv.reader(f), 1):
                try:
                    start, end, asn, org = row
                    first, last, asn = IPAddress(start), IPAddress(end), int(asn)
                except ValueError as e:
                    raise SystemExit(f"{path}:{lineno}: not start,end,asn,org with textual addresses: {row!r} ({e})")
                if not 0 <= asn <= 0xFFFFFFFF:
                    raise SystemExit(f"{path}:{lineno}: AS number {asn} does not fit uint32")
                key = (asn, org)
                record = records.get(key)
                if record is None:
                    record = records[key] = {
                        "autonomous_system_number": asn,
                        "autonomous_system_organization": org,
                    }
                for net in iprange_to_cidrs(first, last):
                    replaced += net in networks
                    networks[net] = record
                rows.append((first, last, record))
    parsed = time.monotonic()

    writer = Writer("GeoLite2-ASN", "ASN data of the ip-location-db project (RouteViews, DB-IP, NRO), CC BY 4.0")
    for net, record in networks.items():
        writer.add(net, record)
    writer.write(args.out)
    written = time.monotonic()

    print(
        f"{args.out}: {len(rows)} ranges, {len(networks)} networks, {len(records)} distinct records"
        f"{f', {replaced} overlapping networks replaced' if replaced else ''}; "
        f"read {parsed - started:.1f}s, written {written - parsed:.1f}s",
        file=sys.stderr,
    )
    check(args.out, rows, networks)


def check(path, rows, networks):
    """Looks up both ends of a sample of ranges (skipping ones that another range overlaps)."""
    import maxminddb

    with maxminddb.open_database(path) as reader:
        sample = random.Random(1).sample(rows, min(2000, len(rows)))
        for first, last, record in sample:
            for ip in (first, last):
                got = reader.get(str(ip))
                if got != record and not any(ip in n and r is not record for n, r in _around(networks, ip)):
                    raise SystemExit(f"{path}: {ip} read back as {got!r}, expected {record!r}")


def _around(networks, ip):
    """The networks of `networks` that hold `ip` (by trying each prefix length)."""
    for plen in range((32 if ip.version == 4 else 128) + 1):
        net = IPNetwork(f"{ip}/{plen}").cidr
        if net in networks:
            yield net, networks[net]


if __name__ == "__main__":
    main()
