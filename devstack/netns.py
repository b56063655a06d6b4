"""Network namespaces for the fault tier: one per broker and per function, routed by a hub.

Topology (all made with ``ip``; nothing but the kernel's own routing is used)::

    root namespace (the test process: client 198.18.K.1, PostgreSQL/Redis 198.18.K.5)
      | veth  <tag>up (root) <-> up0 (hub)      route 198.18.K.0/24 via the hub
    hub namespace  <tag>-hub: a router (ip_forward=1), one veth per node
      | veth  h-<node> (hub, 169.254.1.1) <-> eth0 (node, 198.18.K.<16+i>/32)
    node namespaces <tag>-b1, <tag>-b2, <tag>-b3 (brokers), <tag>-fe, <tag>-fb (functions)

Each node has its own /32 address and a default route to the hub (Calico-style: the hub side
of every veth holds the same link-local gateway address). Every packet between two nodes,
between a node and the client, or between a node and PostgreSQL/Redis crosses the hub, so a
fault is a routing decision there:

- a **partition** is a pair of ``ip rule ... blackhole`` rules in the hub (packets silently
  dropped, as a cut cable; one direction only for an asymmetric cut);
- a **slow or lossy link** sends a node's traffic through a TUN device in the hub, served by
  :mod:`devstack.netem` (delay, jitter, loss in user space: this kernel has no ``sch_netem``).

The ``/24`` (``K``) is picked free at creation inside 198.18.0.0/15 (RFC 2544's benchmarking
range), so two topologies on one machine do not collide. Deleting the namespaces removes every
veth, route and rule with them. A topology records itself under ``STATE_DIR``; ``reap_leftovers``
removes those whose owner process is gone (a run that was killed).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from devstack.errors import DevstackError

log = logging.getLogger(__name__)

STATE_DIR = Path("/run/audit-ingest-netns")
PREFIX = "aif"  # names of our namespaces and root-side links: aif<tag>-<node>, aif<tag>up
GATEWAY = "169.254.1.1"  # the hub side of every node's veth
PARTITION_PREF = 1000  # ip rule priority of partition rules (below the main table's 32766)
SLOW_TABLE = 60
SLOW_DEVICE = "slow0"
FIRST_NODE_HOST = 16
IP_TIMEOUT_S = 20.0


class NetnsUnavailable(DevstackError):
    """This machine (or user) cannot build the namespaced topology."""


def unavailable_reason() -> str | None:
    """Why the topology cannot be built here, or None when it can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces, veth pairs and tmpfs mounts need root"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing (the slow-link emulator needs it)"
    probe = f"{PREFIX}probe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except DevstackError as exc:
        return f"`ip netns add` fails here: {exc}"
    finally:
        with contextlib.suppress(DevstackError):
            _ip("netns", "del", probe)
    return None


def _ip(*args: str, netns: str | None = None, check: bool = True) -> str:
    argv = ["ip", *(("-n", netns) if netns else ()), *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=IP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DevstackError(f"{' '.join(argv)}: {exc}") from exc
    if check and done.returncode != 0:
        raise DevstackError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _sysctl(netns: str, key: str, value: str) -> None:
    path = "/proc/sys/" + key.replace(".", "/")
    argv = ["ip", "netns", "exec", netns, "sh", "-c", f"echo {value} > {path}"]
    subprocess.run(argv, check=True, capture_output=True, timeout=IP_TIMEOUT_S)


@dataclass(frozen=True)
class Node:
    name: str  # short: "b1", "fe"
    netns: str
    address: str


@dataclass
class Topology:
    """A hub namespace and one namespace per node; see the module docstring."""

    tag: str
    subnet: int  # K in 198.18.K.0/24 (0..511 across 198.18.0.0/15)
    nodes: dict[str, Node] = field(default_factory=dict)
    _slow: subprocess.Popen[bytes] | None = None
    _slow_log: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- addresses ----------------------------------------------------------------------
    def _address(self, host: int) -> str:
        return f"198.{18 + self.subnet // 256}.{self.subnet % 256}.{host}"

    @property
    def hub(self) -> str:
        return f"{PREFIX}{self.tag}-hub"

    @property
    def uplink(self) -> str:
        return f"{PREFIX}{self.tag}up"

    @property
    def client_address(self) -> str:
        """The root namespace's address towards the nodes (the load generator's source)."""
        return self._address(1)

    @property
    def service_address(self) -> str:
        """A second root address for PostgreSQL and Redis (cut apart from the client's)."""
        return self._address(5)

    @property
    def cidr(self) -> str:
        return self._address(0) + "/24"

    def node(self, name: str) -> Node:
        return self.nodes[name]

    def exec_prefix(self, name: str) -> list[str]:
        """argv prefix that runs a command inside node ``name``'s namespace (same pid)."""
        return ["ip", "netns", "exec", self.nodes[name].netns]

    # -- life cycle ---------------------------------------------------------------------
    @classmethod
    def create(cls, node_names: Sequence[str]) -> Topology:
        """Build the hub, the uplink and one namespace per node (about 0.1 s per node)."""
        reason = unavailable_reason()
        if reason is not None:
            raise NetnsUnavailable(reason)
        reap_leftovers()
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        with (STATE_DIR / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two runs must not pick the same subnet
            topology = cls(tag=_free_tag(), subnet=_free_subnet())
            topology._record()
            try:
                topology._build_core()
            except BaseException:
                topology.destroy()
                raise
        try:
            for name in node_names:
                topology.add_node(name)
        except BaseException:
            topology.destroy()
            raise
        return topology

    def _record(self) -> None:
        state = {"pid": os.getpid(), "tag": self.tag, "subnet": self.subnet}
        (STATE_DIR / f"{self.tag}.json").write_text(json.dumps(state))

    def _build_core(self) -> None:
        hub, uplink = self.hub, self.uplink
        _ip("netns", "add", hub)
        _ip("link", "set", "lo", "up", netns=hub)
        _ip("link", "add", uplink, "type", "veth", "peer", "name", "up0", "netns", hub)
        _ip("addr", "add", f"{self.client_address}/30", "dev", uplink)
        _ip("addr", "add", f"{self.service_address}/32", "dev", uplink)
        _ip("link", "set", uplink, "up")
        _ip("addr", "add", f"{self._address(2)}/30", "dev", "up0", netns=hub)
        _ip("link", "set", "up0", "up", netns=hub)
        _ip("route", "add", "default", "via", self.client_address, netns=hub)
        _ip("route", "add", self.cidr, "via", self._address(2), "dev", uplink)
        _sysctl(hub, "net.ipv4.ip_forward", "1")

    def add_node(self, name: str) -> Node:
        """The namespace ``name``, created on first use (thread-safe)."""
        with self._lock:
            if name in self.nodes:
                return self.nodes[name]
            host = FIRST_NODE_HOST + len(self.nodes)
            node = Node(name, f"{PREFIX}{self.tag}-{name}", self._address(host))
            self._build_node(node)
            return node

    def _build_node(self, node: Node) -> None:
        name = node.name
        hub, veth = self.hub, f"h-{name}"
        _ip("netns", "add", node.netns)
        self.nodes[name] = node
        _ip("link", "set", "lo", "up", netns=node.netns)
        _ip(
            "link", "add", veth, "netns", hub, "type", "veth",
            "peer", "name", "eth0", "netns", node.netns,
        )  # fmt: skip
        _ip("addr", "add", f"{GATEWAY}/32", "dev", veth, netns=hub)
        _ip("link", "set", veth, "up", netns=hub)
        _ip("route", "add", f"{node.address}/32", "dev", veth, netns=hub)
        _ip("addr", "add", f"{node.address}/32", "dev", "eth0", netns=node.netns)
        _ip("link", "set", "eth0", "up", netns=node.netns)
        _ip("route", "add", GATEWAY, "dev", "eth0", "scope", "link", netns=node.netns)
        _ip("route", "add", "default", "via", GATEWAY, "dev", "eth0", netns=node.netns)

    def destroy(self) -> None:
        """Delete every namespace (their veths, routes and rules go with them). Idempotent."""
        self.slow_stop()
        for netns in [node.netns for node in self.nodes.values()] + [self.hub]:
            _delete_netns(netns)
        _ip("link", "del", self.uplink, check=False)  # gone with the hub; be sure
        (STATE_DIR / f"{self.tag}.json").unlink(missing_ok=True)
        self.nodes.clear()

    # -- faults: partitions -------------------------------------------------------------
    def _addresses(self, group: Sequence[str]) -> list[str]:
        out = []
        for member in group:
            if member == "client":
                out.append(self.client_address)
            elif member == "services":
                out.append(self.service_address)
            else:
                out.append(self.nodes[member].address)
        return out

    def partition(
        self, side_a: Sequence[str], side_b: Sequence[str], *, one_way: bool = False
    ) -> None:
        """Drop every packet between the two sides (only from A to B when ``one_way``).

        Members are node names, ``"client"`` (the test process) or ``"services"``
        (PostgreSQL, Redis). Cumulative: ``heal()`` removes every partition at once.
        """
        for a in self._addresses(side_a):
            for b in self._addresses(side_b):
                pairs = [(a, b)] if one_way else [(a, b), (b, a)]
                for src, dst in pairs:
                    _ip(
                        "rule", "add", "pref", str(PARTITION_PREF), "from", src, "to", dst,
                        "blackhole", netns=self.hub,
                    )  # fmt: skip

    def heal(self) -> None:
        """Remove every partition rule (the slow link, if any, stays)."""
        for _ in range(1000):
            done = subprocess.run(
                ["ip", "-n", self.hub, "rule", "del", "pref", str(PARTITION_PREF)],
                capture_output=True,
                timeout=IP_TIMEOUT_S,
            )
            if done.returncode != 0:
                return
        raise DevstackError("could not remove the partition rules")

    def partition_rules(self) -> int:
        """How many partition rules are in place (for tests of the harness itself)."""
        text = _ip("rule", "show", "pref", str(PARTITION_PREF), netns=self.hub)
        return len([line for line in text.splitlines() if line.strip()])

    # -- faults: a slow, lossy link -----------------------------------------------------
    def slow_link(
        self,
        name: str,
        *,
        delay_ms: float,
        jitter_ms: float,
        loss: float,
        log_file: Path,
        seed: int = 0,
    ) -> None:
        """Route every packet to or from node ``name`` through the user-space emulator."""
        if self._slow is not None:
            raise DevstackError("a slow link is already in place")
        hub, address = self.hub, self.nodes[name].address
        argv = [
            "ip", "netns", "exec", hub, sys.executable, "-m", "devstack.netem", SLOW_DEVICE,
            "--delay-ms", str(delay_ms), "--jitter-ms", str(jitter_ms), "--loss", str(loss),
            "--seed", str(seed),
        ]  # fmt: skip
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with log_file.open("wb") as out:
            process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=Path(__file__).resolve().parent.parent,
            )
        self._slow, self._slow_log = process, log_file
        deadline = time.monotonic() + 15
        while "ready" not in log_file.read_text(errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                self.slow_stop()
                raise DevstackError(f"netem emulator did not start: {log_file.read_text()}")
            time.sleep(0.02)
        _ip("link", "set", SLOW_DEVICE, "up", netns=hub)
        _ip("route", "add", "default", "dev", SLOW_DEVICE, "table", str(SLOW_TABLE), netns=hub)
        # Packets the emulator writes back come in on the TUN device: route them normally.
        _ip("rule", "add", "pref", "50", "iif", SLOW_DEVICE, "lookup", "main", netns=hub)
        _ip("rule", "add", "pref", "60", "to", address, "lookup", str(SLOW_TABLE), netns=hub)
        _ip("rule", "add", "pref", "61", "from", address, "lookup", str(SLOW_TABLE), netns=hub)

    def slow_stop(self) -> dict[str, int]:
        """Route directly again, let queued packets out, stop the emulator; its counters."""
        process, self._slow = self._slow, None
        if process is None:
            return {}
        for pref in ("61", "60", "50"):
            _ip("rule", "del", "pref", pref, netns=self.hub, check=False)
        time.sleep(0.5)  # packets still queued in the emulator (delay + jitter) go out
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        stats: dict[str, int] = {}
        if self._slow_log is not None and self._slow_log.exists():
            for line in self._slow_log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        stats = json.loads(line)
        return stats


def _free_tag() -> str:
    existing = set(_ip("netns", "list").split())
    for _ in range(100):
        tag = secrets.token_hex(2)
        if not any(name.startswith(f"{PREFIX}{tag}-") for name in existing):
            return tag
    raise DevstackError("no free namespace tag")


def _free_subnet() -> int:
    """A /24 of 198.18.0.0/15 that no address or route of the root namespace uses."""
    used = _ip("-o", "addr") + _ip("route") + _ip("rule")
    taken = set()
    for state in STATE_DIR.glob("*.json"):
        with contextlib.suppress(ValueError, OSError, KeyError):
            taken.add(int(json.loads(state.read_text())["subnet"]))
    start = os.getpid() % 512
    for offset in range(512):
        k = (start + offset) % 512
        prefix = f"198.{18 + k // 256}.{k % 256}."
        if k not in taken and prefix not in used:
            return k
    raise DevstackError("no free /24 in 198.18.0.0/15")


def _delete_netns(netns: str) -> None:
    """Kill what still runs in ``netns`` (ours: the namespace is ours), then delete it."""
    for pid in _netns_pids(netns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _ip("netns", "del", netns, check=False)


def _netns_pids(netns: str) -> list[int]:
    done = subprocess.run(
        ["ip", "netns", "pids", netns], capture_output=True, text=True, timeout=IP_TIMEOUT_S
    )
    return [int(p) for p in done.stdout.split() if p.isdigit()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_leftovers() -> list[str]:
    """Delete topologies whose owner process is gone (a killed run); their tags."""
    reaped: list[str] = []
    if not STATE_DIR.exists():
        return reaped
    for state in STATE_DIR.glob("*.json"):
        try:
            info = json.loads(state.read_text())
            pid, tag = int(info["pid"]), str(info["tag"])
        except (ValueError, OSError, KeyError):
            continue
        if _alive(pid):
            continue
        for netns in _ip("netns", "list").split():
            if netns.startswith(f"{PREFIX}{tag}-"):
                _delete_netns(netns)
        _ip("link", "del", f"{PREFIX}{tag}up", check=False)
        state.unlink(missing_ok=True)
        reaped.append(tag)
        log.warning("removed the leftover network namespaces of tag %s (pid %d is gone)", tag, pid)
    return reaped


@contextlib.contextmanager
def topology(node_names: Sequence[str]) -> Iterator[Topology]:
    built = Topology.create(node_names)
    try:
        yield built
    finally:
        built.destroy()
