"""A user-space netem: delay, jitter and loss for the packets routed through a TUN device.

This kernel has no ``sch_netem`` (``tc qdisc add ... netem`` answers "Specified qdisc kind is
unknown") and no ``act_gact`` for ``tc`` drop filters, so :class:`devstack.netns.Topology`
routes a node's packets into a TUN device in the hub namespace, and this process writes each
one back after ``delay ± jitter`` (uniform, like netem's default), or drops it with
probability ``loss``. Packets written back enter the hub as if they came in on the TUN device
and are routed on normally. As with netem and jitter, packets can be reordered.

    ip netns exec <hub> python -m devstack.netem slow0 --delay-ms 200 --jitter-ms 50 --loss 0.05

It prints ``ready`` once the device exists, and its counters as one JSON line on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import random
import signal
import struct
import sys

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
MAX_PACKET = 65_536


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


async def serve(name: str, delay: float, jitter: float, loss: float, seed: int) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    fd = open_tun(name)
    stats = {"packets": 0, "dropped": 0, "delayed": 0, "write_errors": 0}
    stop = asyncio.Event()

    def write(packet: bytes) -> None:
        try:
            os.write(fd, packet)
        except OSError:
            stats["write_errors"] += 1

    def readable() -> None:
        for _ in range(256):
            try:
                packet = os.read(fd, MAX_PACKET)
            except BlockingIOError:
                return
            stats["packets"] += 1
            if rng.random() < loss:
                stats["dropped"] += 1
                continue
            stats["delayed"] += 1
            loop.call_later(max(0.0, delay + rng.uniform(-jitter, jitter)), write, packet)

    loop.add_reader(fd, readable)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    loop.remove_reader(fd)
    os.close(fd)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("device")
    parser.add_argument("--delay-ms", type=float, default=200.0)
    parser.add_argument("--jitter-ms", type=float, default=50.0)
    parser.add_argument("--loss", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    stats = asyncio.run(
        serve(args.device, args.delay_ms / 1000, args.jitter_ms / 1000, args.loss, args.seed)
    )
    print(json.dumps(stats), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
