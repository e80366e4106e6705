#!/usr/bin/env python3
"""Small TCP proxy that tests and benchmarks put in front of Azurite. Standard library only, Python 3.11+.

Usage:
    tcp_proxy.py --listen-port N --target-port M [--delay-ms D] [--control-file PATH]

Listens on 127.0.0.1:N and forwards every connection to 127.0.0.1:M. Once the socket is bound, it prints
exactly one stdout line, "listening N" (flushed). With --listen-port 0 the OS picks the port, and N in
that line is the real port. Nothing else goes to stdout. Errors go to stderr.

--delay-ms D   Each chunk sent client->server is forwarded at (arrival time + D ms). Order is kept
               within a connection. Connections are delayed independently, and pipelined chunks of one
               connection are not delayed one after another, so the delay never adds up.
               Server->client data is forwarded at once.
--control-file PATH   Checked every 50 ms. Its content, stripped of whitespace and lower-cased:
               "blackhole"  forward nothing in either direction. Bytes are held, not dropped, and new
                            connections are still accepted. This lasts until the content changes
                            or the file is removed.
               "reset"      close every open connection at once, with a TCP RST (SO_LINGER 0), then
                            behave as normal. This happens once each time the file is written with
                            "reset": a changed mtime, size or inode counts as a new write.
               anything else, or no file: normal forwarding.

SIGTERM or SIGINT: stop accepting, close all connections and exit with status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import signal
import socket
import struct
import sys

HOST = "127.0.0.1"
CHUNK = 64 * 1024
MAX_HELD = 16 * 1024 * 1024  # client->server bytes held per connection before we stop reading
POLL_S = 0.05


class Proxy:
    def __init__(self, target_port: int, delay_s: float, control_file: str | None):
        self.target_port = target_port
        self.delay_s = delay_s
        self.control_file = control_file
        self.flowing = asyncio.Event()  # cleared while blackholed
        self.flowing.set()
        self.conns: set[Conn] = set()
        self.last_reset_stamp: tuple | None = None
        # counters (kept for debugging; never printed)
        self.connections = 0
        self.chunks_up = 0
        self.bytes_up = 0
        self.bytes_down = 0

    async def handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = Conn(self, creader, cwriter)
        self.conns.add(conn)
        try:
            await conn.run()
        finally:
            self.conns.discard(conn)

    def reset_all(self) -> None:
        for conn in list(self.conns):
            conn.abort()

    async def watch_control(self) -> None:
        if not self.control_file:
            return
        while True:
            try:
                st = os.stat(self.control_file)
                with open(self.control_file, "rb") as f:
                    content = f.read(4096).decode("utf-8", "replace").strip().lower()
                stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            except FileNotFoundError:
                content, stamp = "", None
            except OSError as e:
                print(f"tcp_proxy: control file: {e}", file=sys.stderr, flush=True)
                content, stamp = "", None

            if content == "blackhole":
                self.flowing.clear()
            else:
                self.flowing.set()
            if content == "reset":
                if stamp != self.last_reset_stamp:
                    self.last_reset_stamp = stamp
                    self.reset_all()
            else:
                self.last_reset_stamp = None
            await asyncio.sleep(POLL_S)


def _set_nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


def _abort_rst(writer: asyncio.StreamWriter | None) -> None:
    if writer is None:
        return
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class Conn:
    def __init__(self, proxy: Proxy, creader, cwriter):
        self.p = proxy
        self.creader = creader
        self.cwriter = cwriter
        self.sreader = None
        self.swriter = None
        self.tasks: list[asyncio.Task] = []
        self.aborted = False
        # client->server chunks: (deadline, bytes), or (deadline, None) for EOF
        self.queue: collections.deque = collections.deque()
        self.queued_bytes = 0
        self.have_item = asyncio.Event()
        self.have_space = asyncio.Event()
        self.have_space.set()

    async def run(self) -> None:
        _set_nodelay(self.cwriter)
        try:
            self.sreader, self.swriter = await asyncio.open_connection(HOST, self.p.target_port)
        except OSError as e:
            print(f"tcp_proxy: connect to {HOST}:{self.p.target_port}: {e}", file=sys.stderr, flush=True)
            _abort_rst(self.cwriter)
            return
        if self.aborted:  # a reset came while we were connecting
            _abort_rst(self.swriter)
            return
        _set_nodelay(self.swriter)
        self.tasks = [
            asyncio.create_task(self.read_up()),
            asyncio.create_task(self.write_up()),
            asyncio.create_task(self.pump_down()),
        ]
        try:
            await asyncio.gather(*self.tasks)
        except (OSError, asyncio.IncompleteReadError):
            self.abort()
        except asyncio.CancelledError:
            if not self.aborted:
                raise
        finally:
            for w in (self.cwriter, self.swriter):
                if w is not None and not w.transport.is_closing():
                    w.close()

    def abort(self) -> None:
        if self.aborted:
            return
        self.aborted = True
        for t in self.tasks:
            t.cancel()
        _abort_rst(self.cwriter)
        _abort_rst(self.swriter)

    async def read_up(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.have_space.wait()
            data = await self.creader.read(CHUNK)
            deadline = loop.time() + self.p.delay_s
            if not data:
                self.queue.append((deadline, None))
                self.have_item.set()
                return
            self.p.chunks_up += 1
            self.queue.append((deadline, data))
            self.queued_bytes += len(data)
            if self.queued_bytes >= MAX_HELD:
                self.have_space.clear()
            self.have_item.set()

    async def write_up(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.queue:
                self.have_item.clear()
                await self.have_item.wait()
            deadline, data = self.queue[0]
            wait = deadline - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await self.p.flowing.wait()
            self.queue.popleft()
            if data is None:
                if self.swriter.can_write_eof():
                    self.swriter.write_eof()
                return
            self.queued_bytes -= len(data)
            if self.queued_bytes < MAX_HELD:
                self.have_space.set()
            self.swriter.write(data)
            self.p.bytes_up += len(data)
            await self.swriter.drain()

    async def pump_down(self) -> None:
        while True:
            data = await self.sreader.read(CHUNK)
            await self.p.flowing.wait()
            if not data:
                if self.cwriter.can_write_eof():
                    self.cwriter.write_eof()
                return
            self.cwriter.write(data)
            self.p.bytes_down += len(data)
            await self.cwriter.drain()


async def main() -> int:
    ap = argparse.ArgumentParser(description="TCP proxy with delay / blackhole / reset for tests.")
    ap.add_argument("--listen-port", type=int, required=True)
    ap.add_argument("--target-port", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--control-file", default=None)
    args = ap.parse_args()
    if args.delay_ms < 0:
        ap.error("--delay-ms must be >= 0")

    proxy = Proxy(args.target_port, args.delay_ms / 1000.0, args.control_file)
    server = await asyncio.start_server(proxy.handle, HOST, args.listen_port, reuse_address=True)
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    watcher = asyncio.create_task(proxy.watch_control())
    await stop.wait()
    watcher.cancel()
    server.close()
    proxy.reset_all()
    await asyncio.sleep(0)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main()))
    except OSError as e:  # e.g. bind failure: EADDRINUSE
        print(f"tcp_proxy: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
