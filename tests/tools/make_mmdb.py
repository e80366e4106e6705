#!/usr/bin/env python3
"""Build small MaxMind-format (MMDB) databases from a JSON spec, for the GeoIP tests.

Usage: make_mmdb.py SPEC.json OUT_DIR [--layout geoip2|flat]

Writes OUT_DIR/city.mmdb and OUT_DIR/asn.mmdb. The spec:

    {
      "comment": "ignored",
      "city_database_type": "GeoLite2-City",      (optional; this is the default)
      "asn_database_type": "GeoLite2-ASN",        (optional; this is the default)
      "city": [{"network": "13.64.0.0/11", "country": "US", "country_name": "United States",
                "city": "Des Moines", "latitude": 41.6, "longitude": -93.6}, ...],
      "asn":  [{"network": "13.64.0.0/11", "asn": 8075, "org": "Microsoft Corporation"}, ...]
    }

Every field but "network" is optional ("latitude" and "longitude" go together). Networks
may nest: a more specific one wins inside a wider one, whatever the order in the spec.

Both databases are IPv6 ones (ip_version 6) that hold IPv4 networks too, the way
MaxMind's do: IPv4 a.b.c.d/n sits at ::a.b.c.d/(96+n), where readers look IPv4 addresses
up, and ::ffff:0:0/96 (IPv4-mapped addresses) is an alias of that subtree.

Layouts of the City records:
  geoip2 (default) MaxMind's GeoIP2/GeoLite2: {"country": {"iso_code", "names": {"en"}},
                   "city": {"names": {"en"}}, "location": {"latitude", "longitude"}},
                   coordinates as doubles.
  flat             the ip-location-db project's geolite2-city-mmdb: {"country_code",
                   "state1", "state2", "city", "postcode", "latitude", "longitude",
                   "timezone"}, coordinates as 32-bit floats, "" for what is unknown.
ASN records are GeoLite2-ASN's: {"autonomous_system_number" (uint32),
"autonomous_system_organization"}.

Set SOURCE_DATE_EPOCH for a reproducible build_epoch (and so identical files). Each written
database is read back with the `maxminddb` reader, if it is installed, and checked.
"""

import argparse
import json
import os
import struct
import sys
from pathlib import Path

from mmdb_writer import MmdbBaseType, MmdbF32, MmdbF64, MmdbU32, MMDBWriter, SearchTreeLeaf, SearchTreeNode
from netaddr import IPNetwork, IPSet

UINT32_MAX = 0xFFFFFFFF


class Writer(MMDBWriter):
    """An IPv6 database that also holds IPv4 networks, as MaxMind's databases do.

    Plain ints are written as uint32, plain floats as double (mmdb-writer 0.2.7 ignores its
    float_type for them); wrap values in MmdbU16, MmdbF32, ... for other types.
    """

    def __init__(self, database_type, description):
        super().__init__(
            ip_version=6,
            database_type=database_type,
            languages=["en"],
            description=description,
            ipv4_compatible=True,
            int_type="u32",
        )
        self._networks = {}

    def add(self, network, record):
        """Queue one network (str or IPNetwork) and its record; written by write()."""
        net = IPNetwork(network)
        if net.ip != net.network:
            raise ValueError(f"{network}: host bits set (the network is {net.cidr})")
        if net.version == 6 and net.prefixlen == 0:
            raise ValueError(f"{network}: ::/0 cannot be written (mmdb-writer needs a prefix of 1 or more)")
        if net in self._networks:
            raise ValueError(f"{network}: listed twice")
        self._networks[net] = record

    def write(self, path):
        # A wider network inserted after a narrower one would replace it, so the widest go
        # first (an IPv4 /n counts as the IPv6 /(96+n) it is stored as).
        def depth(net):
            return net.prefixlen + (96 if net.version == 4 else 0)

        for net in sorted(self._networks, key=depth):
            self.insert_network(IPSet([net]), self._networks[net])
        self._alias_ipv4_mapped()
        tmp = Path(f"{path}.tmp")
        self.to_db_file(str(tmp))
        os.replace(tmp, path)

    def _alias_ipv4_mapped(self):
        """Points ::ffff:0:0/96 at the IPv4 subtree (::/96), as MaxMind's writer does."""
        mapped = IPNetwork("::ffff:0:0/96")
        for net in self._networks:
            if net.version == 6 and net in mapped:
                raise ValueError(f"{net}: inside ::ffff:0:0/96, which aliases the IPv4 networks")
        ipv4 = self._node_at([0] * 96, create=False)
        if ipv4 is None:
            return
        parent = self._node_at([0] * 80 + [1] * 15, create=True)
        parent[1] = ipv4

    def _node_at(self, bits, create):
        """The tree child reached by following `bits` from the root: None if there is none
        (or, unless `create`, if a wider network's leaf is on the way). `create` makes the
        missing nodes, splitting a wider network's leaf into a node whose halves hold it."""
        node = self.tree
        for bit in bits:
            if isinstance(node, SearchTreeLeaf):
                return None
            child = node[bit]
            if create and child is None:
                child = node[bit] = SearchTreeNode()
            elif create and isinstance(child, SearchTreeLeaf):
                child = node[bit] = SearchTreeNode(child, child)
            if child is None:
                return None
            node = child
        return node

    def _build_meta(self):
        meta = super()._build_meta()
        if os.environ.get("SOURCE_DATE_EPOCH"):
            meta["build_epoch"] = int(os.environ["SOURCE_DATE_EPOCH"])
        return meta


def readback(value):
    """`value` as the reader returns it: wrappers undone, 32-bit floats rounded."""
    if isinstance(value, dict):
        return {k: readback(v) for k, v in value.items()}
    if isinstance(value, list):
        return [readback(v) for v in value]
    if isinstance(value, MmdbF32):
        return struct.unpack(">f", struct.pack(">f", value.value))[0]
    if isinstance(value, MmdbBaseType):
        return value.value
    return value


def check_keys(entry, allowed, where):
    unknown = set(entry) - set(allowed) - {"network", "comment"}
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
    if "network" not in entry:
        raise ValueError(f"{where}: no network")


def coordinates(entry, where):
    lat, lon = entry.get("latitude"), entry.get("longitude")
    if (lat is None) != (lon is None):
        raise ValueError(f"{where}: latitude and longitude go together")
    if lat is None:
        return None
    lat, lon = float(lat), float(lon)
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"{where}: coordinates out of range")
    return lat, lon


def city_record(entry, layout, where):
    check_keys(entry, ("country", "country_name", "city", "latitude", "longitude"), where)
    coords = coordinates(entry, where)
    if layout == "flat":
        return {
            "country_code": entry.get("country", ""),
            "state1": "",
            "state2": "",
            "city": entry.get("city", ""),
            "postcode": "",
            "latitude": MmdbF32(coords[0] if coords else 0.0),
            "longitude": MmdbF32(coords[1] if coords else 0.0),
            "timezone": "",
        }
    record = {}
    if "country" in entry or "country_name" in entry:
        country = {}
        if "country" in entry:
            country["iso_code"] = entry["country"]
        if "country_name" in entry:
            country["names"] = {"en": entry["country_name"]}
        record["country"] = country
    if "city" in entry:
        record["city"] = {"names": {"en": entry["city"]}}
    if coords:
        record["location"] = {"latitude": MmdbF64(coords[0]), "longitude": MmdbF64(coords[1])}
    return record


def asn_record(entry, where):
    check_keys(entry, ("asn", "org"), where)
    record = {}
    if "asn" in entry:
        asn = entry["asn"]
        if not isinstance(asn, int) or isinstance(asn, bool) or not 0 <= asn <= UINT32_MAX:
            raise ValueError(f"{where}: asn must be an integer in 0..{UINT32_MAX}")
        record["autonomous_system_number"] = MmdbU32(asn)
    if "org" in entry:
        record["autonomous_system_organization"] = entry["org"]
    return record


def verify(path, entries):
    """Reads `path` back: each network's first and last address give its own record,
    unless a more specific network of the spec holds that address."""
    try:
        import maxminddb
    except ImportError:
        print(f"{path}: not checked (the maxminddb reader is not installed)", file=sys.stderr)
        return
    def as_stored(net):  # where the tree holds it: IPv4 a.b.c.d/n at ::a.b.c.d/(96+n)
        return net.ipv6(ipv4_compatible=True) if net.version == 4 else net

    nets = [(IPNetwork(n), rec) for n, rec in entries]
    stored = [(as_stored(net), rec) for net, rec in nets]
    with maxminddb.open_database(str(path)) as reader:
        for net, _ in nets:
            for ip in (net[0], net[-1]):
                at = as_stored(IPNetwork(ip))
                owner = max((n for n in stored if at in n[0]), key=lambda n: n[0].prefixlen)
                got = reader.get(str(ip))
                if got != owner[1]:
                    raise SystemExit(f"{path}: {ip} read back as {got!r}, expected {owner[1]!r}")
                if net.version == 4:
                    mapped = reader.get(f"::ffff:{ip}")
                    if mapped != owner[1]:
                        raise SystemExit(f"{path}: ::ffff:{ip} read back as {mapped!r}")


def build(spec, out_dir, layout="geoip2"):
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    unknown = set(spec) - {"comment", "city", "asn", "city_database_type", "asn_database_type"}
    if unknown:
        raise ValueError(f"spec: unknown key(s) {sorted(unknown)}")

    if layout == "flat":
        city = Writer(spec.get("city_database_type", "city"), "flowgate test City (ip-location-db layout)")
    else:
        city = Writer(spec.get("city_database_type", "GeoLite2-City"), "flowgate test City")
    asn = Writer(spec.get("asn_database_type", "GeoLite2-ASN"), "flowgate test ASN")

    written = []
    for name, writer, make in (
        ("city", city, lambda e, w: city_record(e, layout, w)),
        ("asn", asn, asn_record),
    ):
        entries = []
        for i, entry in enumerate(spec.get(name, [])):
            where = f"{name}[{i}] {entry.get('network', '')}"
            record = make(entry, where)
            writer.add(entry["network"], record)
            entries.append((entry["network"], readback(record)))
        path = out_dir / f"{name}.mmdb"
        writer.write(path)
        verify(path, entries)
        written.append(path)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", help="JSON spec file")
    ap.add_argument("out_dir", help="directory for city.mmdb and asn.mmdb")
    ap.add_argument("--layout", choices=("geoip2", "flat"), default="geoip2", help="City record layout")
    args = ap.parse_args()
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    try:
        for path in build(spec, args.out_dir, args.layout):
            print(path)
    except ValueError as e:
        raise SystemExit(f"{args.spec}: {e}")


if __name__ == "__main__":
    main()
