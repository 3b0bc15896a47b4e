#!/usr/bin/env python3
"""A TCP proxy for the cluster fault test: one listener per directed link
between two replicas, and a control file that cuts replicas off.

    netcut.py --control FILE --link SRC:DST:LISTEN_PORT:TARGET_PORT [--link ...]

Replica SRC reaches replica DST at 127.0.0.1:LISTEN_PORT (`ruble-node dev
--peer DST=127.0.0.1:LISTEN_PORT`), which forwards to DST's replication port
TARGET_PORT. FILE lists the ids of the replicas that are cut off (whitespace
separated; empty or missing: none). A link touching a cut replica behaves like
a partition, not a refusal: its open connections go silent (their bytes are
read and dropped, nothing is forwarded either way) and new connections are
accepted and held the same way, so the peer sees timeouts. Lifting the cut
closes the silent connections so the peers reconnect.
"""

import argparse
import asyncio
import sys

POLL_S = 0.05
BUF = 1 << 16


class Pipe:
    """One forwarded connection: both sides, and whether its link is cut."""

    def __init__(self, down, up):
        self.down, self.up = down, up
        self.cut = False

    def close(self):
        self.down.close()
        self.up.close()


class Link:
    def __init__(self, src, dst, listen_port, target_port):
        self.src, self.dst = src, dst
        self.listen_port, self.target_port = listen_port, target_port
        self.conns = set()  # writers of both sides of every open connection


def read_cut(path):
    try:
        with open(path) as f:
            return set(f.read().split())
    except FileNotFoundError:
        return set()


class Proxy:
    def __init__(self, control, links):
        self.control = control
        self.links = links
        self.cut = set()

    def is_cut(self, link):
        return link.src in self.cut or link.dst in self.cut

    async def drain_forever(self, reader):
        while await reader.read(BUF):
            pass

    async def pump(self, reader, writer, pipe):
        try:
            while True:
                data = await reader.read(BUF)
                if not data:
                    break
                if pipe.cut:
                    continue  # silently dropped, like a partitioned network
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def handle(self, link, reader, writer):
        if self.is_cut(link):
            # Held open and silent until the cut is lifted.
            link.conns.add(writer)
            try:
                await self.drain_forever(reader)
            except (ConnectionError, OSError):
                pass
            finally:
                link.conns.discard(writer)
                writer.close()
            return
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", link.target_port)
        except OSError:
            writer.close()
            return
        pipe = Pipe(writer, uw)
        link.conns.add(pipe)
        # A cut that came while connecting upstream did not see this pipe.
        pipe.cut = self.is_cut(link)
        try:
            await asyncio.gather(self.pump(reader, uw, pipe), self.pump(ur, writer, pipe))
        finally:
            link.conns.discard(pipe)

    async def watch(self):
        while True:
            cut = read_cut(self.control)
            if cut != self.cut:
                lifted = self.cut - cut
                self.cut = cut
                for link in self.links:
                    for c in list(link.conns):
                        if isinstance(c, Pipe):
                            if self.is_cut(link):
                                c.cut = True  # silent while cut
                            elif lifted and c.cut:
                                c.close()  # silenced before: let the peers reconnect
                        elif not self.is_cut(link):
                            c.close()  # a held connection: let the peer reconnect
                print(f"netcut: cut={sorted(self.cut)}", flush=True)
            await asyncio.sleep(POLL_S)

    async def run(self):
        servers = []
        for link in self.links:
            servers.append(
                await asyncio.start_server(
                    lambda r, w, link=link: self.handle(link, r, w), "127.0.0.1", link.listen_port
                )
            )
        print("netcut: ready", flush=True)
        await self.watch()


def parse_link(s):
    src, dst, lp, tp = s.split(":")
    return Link(src, dst, int(lp), int(tp))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--control", required=True)
    ap.add_argument("--link", action="append", type=parse_link, required=True)
    a = ap.parse_args()
    try:
        asyncio.run(Proxy(a.control, a.link).run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
