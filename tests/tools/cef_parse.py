#!/usr/bin/env python3
r"""Parse CEF lines from stdin with cefp; write one JSON object per line to stdout.

Each input line may carry a syslog header: everything before the first "CEF:"
is dropped. Output (ASCII JSON, one object per line, values unescaped by cefp):
  {"header": {"version", "vendor", "product", "device_version", "signature_id",
              "name", "severity"}, "extensions": {key: value, ...}}
Exits 1 naming the line number on the first line that does not parse.

cefp 0.0.2 unescaping: header fields turn any "\X" into "X" ("\|" -> "|",
"\\" -> "\"); extension values turn "\n"/"\r" into LF/CR and any other
"\X" into "X" ("\\" -> "\", "\=" -> "="). Nothing is post-processed here.
"""
import json
import re
import sys

import cefp

UNESCAPED_EQ = re.compile(r"\\.|=", re.S)


def parse(line):
    start = line.find("CEF:")
    if start < 0:
        raise ValueError("no 'CEF:' in line")
    cef = line[start:]
    event = cefp.parse(cef)  # ValueError unless there are 7 unescaped header pipes
    ext = event["extension"]
    # cefp never rejects an extension: it zips its tokens into a dict, silently
    # dropping an odd trailing token and collapsing duplicate keys. Demand one
    # key per unescaped "=", a key first, and sane keys, so a malformed line fails.
    raw_ext = cefp.CEFParser.split(cef)[7].lstrip()
    if raw_ext and not re.match(r"[^\s=\\]+=", raw_ext):
        raise ValueError("extension does not start with 'key='")
    if UNESCAPED_EQ.findall(raw_ext).count("=") != len(ext):
        raise ValueError("extension has an unescaped '=' in a value or a duplicate key")
    for key in ext:
        if not key or re.search(r"\s", key):
            raise ValueError(f"bad extension key {key!r}")
    device = event["device"]
    return {
        "header": {
            "version": event["version"],
            "vendor": device["vendor"],
            "product": device["product"],
            "device_version": device["version"],
            "signature_id": device["event_class_id"],
            "name": event["name"],
            "severity": event["severity"],
        },
        "extensions": ext,
    }


def main():
    for number, raw in enumerate(sys.stdin.buffer, 1):
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
            out = parse(line)
        except ValueError as err:  # UnicodeDecodeError is a ValueError too
            sys.exit(f"cef_parse.py: line {number}: {err}: {raw!r}")
        sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
