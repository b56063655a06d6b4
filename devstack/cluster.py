"""A private fault-testing stack: a 3-node KRaft cluster, PostgreSQL and Redis.

Built for the fault tier (``tests/fault``): every server is private to this object (the
``DATABASE_URL`` / ``REDIS_URL`` / ``KAFKA_BOOTSTRAP_SERVERS`` of the shell are ignored), so a
test may kill, pause or stop any of them without touching the session stack or ``make run``.

The Kafka cluster is N combined broker+controller nodes (3 by default: the fastest layout to
start on 2 cores, one JVM per node) run from the same Maven jars as ``LocalStack``
(``.dev/kafka-libs``). Replication factor 3, ``min.insync.replicas`` 2 and unclean leader
election off are the broker defaults here, so a topic created without settings is durable.

By default everything listens on free 127.0.0.1 ports. ``isolated=True`` (root) runs each
broker in a network namespace of its own, on its own address (``devstack.netns``: listeners,
advertised listeners and controller quorum voters use those addresses), and puts each
broker's log directory and PostgreSQL's data on a small tmpfs (``SmallDisk``) that a test can
fill up.

```python
with ClusterStack(root, kafka_libs=Path(".dev/kafka-libs")) as stack:
    stack.env["KAFKA_BOOTSTRAP_SERVERS"]       # 127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3
    leader = stack.kafka.partition_leader("t", 0)
    stack.kafka.kill(leader)                   # SIGKILL
    stack.kafka.start_nodes([leader])          # back, and waits until it answers
```
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from devstack.errors import DevstackError, ServiceStartError
from devstack.kafka import FAST_START, FORMAT_TIMEOUT_S, ensure_java
from devstack.kafka_config import (
    HOST,
    KafkaNode,
    load_or_create_cluster_id,
    log4j2_properties,
    plan_nodes,
    render_properties,
    server_properties,
)
from devstack.kafka_libs import ensure_kafka_libs
from devstack.netns import Topology
from devstack.netns import reap_leftovers as reap_namespaces
from devstack.ports import free_ports, port_accepts
from devstack.postgres import PostgresService
from devstack.redis_server import RedisService
from devstack.service import Service
from devstack.wait import wait_until

log = logging.getLogger(__name__)


# Broker settings on top of kafka_config.server_properties (which already sets RF 3 and
# min.insync.replicas 2 for a 3-node plan).
CLUSTER_OVERRIDES: dict[str, str] = {
    "unclean.leader.election.enable": "false",
    "offsets.topic.num.partitions": "3",
    "num.io.threads": "2",
    "log.cleaner.enable": "false",
}
CLUSTER_HEAP = "384m"
# Sizes of the small filesystems (tmpfs) under each broker's log directory and PostgreSQL's
# data: room for a long profile's topics, small enough to fill in well under a second.
BROKER_DISK = "512m"
POSTGRES_DISK = "256m"
FILLER = ".filler"


class KafkaNodeService(Service):
    """One combined broker+controller node of a KafkaCluster; its Service root is its home."""

    name = "kafka"
    env_var = "KAFKA_BOOTSTRAP_SERVERS"
    stop_timeout: ClassVar[float] = 30.0
    retry_on: ClassVar[tuple[type[Exception], ...]] = (KafkaException,)

    def __init__(
        self,
        node: KafkaNode,
        cluster: Sequence[KafkaNode],
        *,
        cluster_id_file: Path,
        libs_dir: Path,
        heap: str = CLUSTER_HEAP,
        overrides: Mapping[str, str] | None = None,
        ready_timeout: float = 120.0,
        hosts: Mapping[int, str] | None = None,
        exec_prefix: Sequence[str] = (),
        disk: SmallDisk | None = None,
    ) -> None:
        super().__init__(node.home, ready_timeout=ready_timeout)
        self.node = node
        self.cluster = list(cluster)
        self.cluster_id_file = cluster_id_file
        self.libs_dir = libs_dir
        self.heap = heap
        self.overrides = dict(overrides or {})
        # node id -> address each node listens on and advertises (default: 127.0.0.1), and
        # the argv prefix that runs the JVM in this node's network namespace.
        self.hosts = dict(hosts or {})
        self.exec_prefix = list(exec_prefix)
        self.disk = disk  # a small filesystem of its own under the log directory
        self._java: Path | None = None

    @property
    def external_url(self) -> str | None:
        return None  # always private: faults must never reach a shared broker

    @property
    def node_id(self) -> int:
        return self.node.node_id

    @property
    def log_file(self) -> Path:
        return self.node.home / "console.log"

    @property
    def marker(self) -> str:
        return str(self.node.properties_file)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def host(self) -> str:
        return self.hosts.get(self.node_id, HOST)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.node.broker_port}"

    def local_url(self) -> str:
        return self.bootstrap

    def ports(self) -> dict[str, int]:
        return {
            f"kafka node {self.node_id}": self.node.broker_port,
            f"kafka node {self.node_id} controller": self.node.controller_port,
        }

    def properties(self) -> dict[str, str]:
        props = {**server_properties(self.node, self.cluster), **self.overrides}
        if self.hosts:  # each node on its own address (network namespaces)
            node, host = self.node, self.host
            props["controller.quorum.voters"] = ",".join(
                f"{n.node_id}@{self.hosts[n.node_id]}:{n.controller_port}" for n in self.cluster
            )
            props["listeners"] = (
                f"PLAINTEXT://{host}:{node.broker_port},CONTROLLER://{host}:{node.controller_port}"
            )
            props["advertised.listeners"] = f"PLAINTEXT://{host}:{node.broker_port}"
        return props

    def prepare(self) -> None:
        ensure_kafka_libs(self.libs_dir)
        self._java = ensure_java()
        node = self.node
        node.home.mkdir(parents=True, exist_ok=True)
        if self.disk is not None:
            self.disk.mount()
        node.properties_file.write_text(render_properties(self.properties()))
        node.log4j_file.write_text(log4j2_properties(node.server_log))
        if not (node.data_dir / "meta.properties").exists():
            self._format(self.cluster_id_file.read_text().strip())

    def _java_argv(self, main: str) -> list[str]:
        assert self._java is not None
        return [
            str(self._java),
            f"-Xmx{self.heap}",
            "-Xms128m",
            *FAST_START,
            f"-Dlog4j2.configurationFile={self.node.log4j_file}",
            f"-Dkafka.logs.dir={self.node.home}",
            "-cp",
            f"{self.libs_dir}/*",
            main,
        ]

    def _format(self, cluster_id: str) -> None:
        argv = [
            *self._java_argv("kafka.tools.StorageTool"),
            "format",
            "--ignore-formatted",
            "-t",
            cluster_id,
            "-c",
            str(self.node.properties_file),
        ]
        try:
            subprocess.run(
                argv, check=True, capture_output=True, text=True, timeout=FORMAT_TIMEOUT_S
            )
        except subprocess.CalledProcessError as exc:
            raise ServiceStartError(
                f"kafka node {self.node_id}: storage format failed:\n{exc.stdout}{exc.stderr}"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise ServiceStartError(
                f"kafka node {self.node_id}: storage format timed out after {exc.timeout}s"
            ) from exc

    def command(self) -> list[str]:
        return [*self.exec_prefix, *self._java_argv("kafka.Kafka"), str(self.node.properties_file)]

    def probe(self, url: str) -> bool:
        if not port_accepts(self.node.broker_port, self.host):
            return False
        admin = AdminClient(
            {"bootstrap.servers": url, "log_level": 0, "socket.connection.setup.timeout.ms": 3000}
        )
        metadata = admin.list_topics(timeout=3)
        # The node answers, and the controller has registered (unfenced) it.
        return self.node_id in metadata.brokers

    def signal(self, sig: signal.Signals) -> None:
        """Send ``sig`` to the node's JVM (no-op when it is not running)."""
        if self.process is None:
            return
        try:
            os.kill(self.process.pid, sig)
        except ProcessLookupError:
            return

    def kill(self) -> None:
        """SIGKILL the JVM and reap it; the data stays (``start()`` brings it back)."""
        process = self.process
        if process is None:
            return
        self.signal(signal.SIGCONT)  # a paused JVM dies just as well, but be explicit
        self.signal(signal.SIGKILL)
        if process.popen is not None:
            process.popen.wait(timeout=30)
        else:
            wait_until(
                lambda: not process.is_alive(), what=f"kafka node {self.node_id} exit", timeout=30
            )
        process.pid_file.unlink(missing_ok=True)
        self.process = None


class KafkaCluster:
    """N combined-mode KRaft nodes on 127.0.0.1 (free ports unless given)."""

    def __init__(
        self,
        home: Path,
        *,
        libs_dir: Path,
        nodes: int = 3,
        broker_ports: Sequence[int] | None = None,
        controller_ports: Sequence[int] | None = None,
        heap: str = CLUSTER_HEAP,
        overrides: Mapping[str, str] | None = None,
        ready_timeout: float = 120.0,
        network: Topology | None = None,
        disks: bool = False,
    ) -> None:
        """``network``: run node i in the topology's namespace ``b<i>``, on its address.

        ``disks``: give each node's log directory a small filesystem of its own (tmpfs,
        ``BROKER_DISK``), which a test may fill up (``SmallDisk.fill``).
        """
        self.home = home.resolve()
        self.libs_dir = libs_dir.resolve()
        if broker_ports is None or controller_ports is None:
            ports = free_ports(2 * nodes)
            broker_ports, controller_ports = ports[:nodes], ports[nodes:]
        plan = plan_nodes(self.home, broker_ports, controller_ports)
        merged = {**CLUSTER_OVERRIDES, **(overrides or {})}
        hosts: dict[int, str] = {}
        if network is not None:
            hosts = {node.node_id: network.add_node(f"b{node.node_id}").address for node in plan}
        self.network = network
        self.nodes: list[KafkaNodeService] = [
            KafkaNodeService(
                node,
                plan,
                cluster_id_file=self.home / "cluster.id",
                libs_dir=self.libs_dir,
                heap=heap,
                overrides=merged,
                ready_timeout=ready_timeout,
                hosts=hosts,
                exec_prefix=network.exec_prefix(f"b{node.node_id}") if network else (),
                disk=SmallDisk(node.data_dir, BROKER_DISK) if disks else None,
            )
            for node in plan
        ]
        self.timings: dict[str, float] = {}

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    @property
    def node_ids(self) -> list[int]:
        return [node.node_id for node in self.nodes]

    def node(self, node_id: int) -> KafkaNodeService:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        raise KeyError(f"no kafka node {node_id}")

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start every node in parallel (a quorum needs a majority) and wait for all."""
        began = time.monotonic()
        ensure_kafka_libs(self.libs_dir)
        self.home.mkdir(parents=True, exist_ok=True)
        load_or_create_cluster_id(self.home / "cluster.id")  # once, before the nodes race
        try:
            self.start_nodes(self.node_ids)
        except BaseException:
            self.stop(graceful=False)
            raise
        self.timings["start"] = time.monotonic() - began
        log.info("kafka cluster ready in %.1fs at %s", self.timings["start"], self.bootstrap)

    def start_nodes(self, node_ids: Iterable[int]) -> None:
        """(Re)start these nodes in parallel; returns once each answers as a registered broker."""
        nodes = [self.node(i) for i in node_ids]
        _parallel([node.start for node in nodes], "kafka-start")

    def stop(self, *, graceful: bool = True) -> None:
        """Stop every node in parallel (SIGTERM, or SIGKILL when not ``graceful``)."""
        for node in self.nodes:
            node.signal(signal.SIGCONT)
        if graceful:
            _parallel([node.stop for node in self.nodes], "kafka-stop")
        else:
            for node in self.nodes:
                node.kill()

    # -- faults -------------------------------------------------------------------------
    def kill(self, node_id: int) -> None:
        self.node(node_id).kill()

    def terminate(self, node_id: int) -> None:
        """Clean shutdown of one node (SIGTERM, controlled shutdown)."""
        self.node(node_id).stop()

    def pause(self, node_id: int) -> None:
        self.node(node_id).signal(signal.SIGSTOP)

    def resume(self, node_id: int) -> None:
        self.node(node_id).signal(signal.SIGCONT)

    def running(self) -> list[int]:
        return [node.node_id for node in self.nodes if node.is_running()]

    # -- observation --------------------------------------------------------------------
    def admin(self, via: Iterable[int] | None = None) -> AdminClient:
        """An admin client (bootstrapped only from the nodes ``via``, when given)."""
        servers = self.bootstrap
        if via is not None:
            servers = ",".join(self.node(i).bootstrap for i in via)
        return AdminClient(
            {
                "bootstrap.servers": servers,
                "log_level": 0,
                "socket.connection.setup.timeout.ms": 3000,
            }
        )

    def partition_leader(
        self, topic: str, partition: int, timeout: float = 10.0, via: Iterable[int] | None = None
    ) -> int:
        """The node id leading ``topic``/``partition`` (per the metadata of ``via``, or any)."""
        metadata = self.admin(via).list_topics(topic, timeout=timeout)
        leader = int(metadata.topics[topic].partitions[partition].leader)
        if leader < 0:
            raise DevstackError(f"{topic}/{partition} has no leader")
        return leader

    def isr(self, topic: str, timeout: float = 10.0) -> dict[int, list[int]]:
        """partition -> in-sync replica node ids."""
        metadata = self.admin().list_topics(topic, timeout=timeout)
        return {p: list(info.isrs) for p, info in metadata.topics[topic].partitions.items()}

    def is_healthy(self) -> bool:
        """Every node registered, every partition of every topic led and fully in sync."""
        metadata = self.admin().list_topics(timeout=3)
        if set(metadata.brokers) != set(self.node_ids):
            return False
        for topic in metadata.topics.values():
            if topic.error is not None:
                return False
            for info in topic.partitions.values():
                if info.leader < 0 or set(info.isrs) != set(info.replicas):
                    return False
        return True

    def wait_healthy(self, timeout: float = 90.0) -> float:
        """Wait (bounded) until ``is_healthy``; returns the seconds it took."""
        began = time.monotonic()
        wait_until(
            self.is_healthy,
            what="kafka cluster fully in sync",
            timeout=timeout,
            retry_on=(KafkaException,),
            interval=0.2,
            max_interval=0.5,
        )
        return time.monotonic() - began


class SmallDisk:
    """A tmpfs of ``size`` mounted at ``path`` (root only), which a test can fill and free.

    ``fill()`` writes a filler file until the filesystem has no block left (``ENOSPC`` for
    every writer); ``free()`` deletes it. ``unmount()`` is lazy, so a process still holding a
    file there does not keep the mount.
    """

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        self.size = size

    @property
    def mounted(self) -> bool:
        return os.path.ismount(self.path)

    def mount(self) -> None:
        if self.mounted:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        _run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.path)])

    def unmount(self) -> None:
        if self.mounted:
            _run(["umount", "-l", str(self.path)])

    def free_bytes(self) -> int:
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self) -> int:
        """Fill the filesystem; returns the bytes the filler took."""
        filler = self.path / FILLER
        chunk = b"\0" * (1 << 20)
        written = 0
        with filler.open("ab", buffering=0) as out:
            bulk = self.free_bytes() - (4 << 20)
            if bulk > 0:  # most of it at once (no copying), then write to the last byte
                try:
                    os.posix_fallocate(out.fileno(), 0, bulk)
                    written = bulk
                    out.seek(bulk)
                except OSError:
                    pass
            for size in (1 << 20, 1 << 12, 1):
                while True:
                    try:
                        out.write(chunk[:size])
                    except OSError:
                        break  # ENOSPC: try a smaller write, down to one byte
                    written += size
        return written

    def free(self) -> None:
        (self.path / FILLER).unlink(missing_ok=True)


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise DevstackError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")


class PrivatePostgres(PostgresService):
    """PostgreSQL that ignores DATABASE_URL: the fault tier stops it at will.

    ``host``: an extra address to listen on (reachable from the namespaces), also the one in
    ``url``. ``disk``: a small filesystem of its own under ``root`` (data, WAL, pid file); the
    server's log is kept outside it, so it survives a full disk.
    """

    def __init__(
        self, root: Path, port: int, *, host: str | None = None, disk: SmallDisk | None = None
    ) -> None:
        super().__init__(root, port)
        self.host = host
        self.disk = disk

    @property
    def external_url(self) -> str | None:
        return None

    @property
    def log_file(self) -> Path:
        return self.root.parent / "postgres.log" if self.disk is not None else super().log_file

    def local_url(self) -> str:
        url = super().local_url()
        return url.replace("@127.0.0.1:", f"@{self.host}:") if self.host else url

    def prepare(self) -> None:
        if self.disk is not None:
            self.disk.mount()
        super().prepare()
        if self.host:  # initdb trusts loopback only: trust the topology's /24 too
            hba = self.data_dir / "pg_hba.conf"
            line = f"host all all {self.host.rsplit('.', 1)[0]}.0/24 trust\n"
            if line not in hba.read_text():
                with hba.open("a") as out:
                    out.write(line)

    def command(self) -> list[str]:
        argv = super().command()
        if self.host:
            listen = f"listen_addresses=127.0.0.1,{self.host}"
            argv = [listen if a == "listen_addresses=127.0.0.1" else a for a in argv]
        return argv


class PrivateRedis(RedisService):
    """Redis that ignores REDIS_URL: the fault tier stops it at will (``host`` as above)."""

    def __init__(self, root: Path, port: int, *, host: str | None = None) -> None:
        super().__init__(root, port)
        self.host = host

    @property
    def external_url(self) -> str | None:
        return None

    def local_url(self) -> str:
        return f"redis://{self.host}:{self.port}/0" if self.host else super().local_url()

    def command(self) -> list[str]:
        argv = super().command()
        if self.host:
            at = argv.index("--bind") + 2  # after 127.0.0.1: --bind takes several addresses
            argv.insert(at, self.host)
        return argv

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None:
            try:
                os.kill(self.process.pid, sig)
            except ProcessLookupError:
                return


class ClusterStack:
    """A KafkaCluster plus private PostgreSQL and Redis under ``root`` (free loopback ports).

    ``isolated=True`` (root only; see ``devstack.netns``): each broker runs in a network
    namespace of its own, on its own address, routed through a hub namespace that can cut or
    slow any link (``stack.network``); PostgreSQL and Redis also listen on the topology's
    service address, and ``env`` names that address. Each broker's log directory and
    PostgreSQL's data then sit on small filesystems of their own (``SmallDisk``) that a test
    can fill. Call ``release()`` after ``stop()``: it deletes the namespaces and unmounts the
    filesystems (``reap_leftovers`` does it for a run that was killed).
    """

    def __init__(
        self, root: Path, *, kafka_libs: Path, nodes: int = 3, isolated: bool = False
    ) -> None:
        self.root = root.resolve()
        pg_port, redis_port = free_ports(2)
        self.network: Topology | None = None
        if isolated:
            reap_leftovers(self.root.parent)
            self.network = Topology.create([])
        try:
            host = self.network.service_address if self.network else None
            pg_root = self.root / "pg" if isolated else self.root
            pg_disk = SmallDisk(pg_root, POSTGRES_DISK) if isolated else None
            self.postgres = PrivatePostgres(pg_root, pg_port, host=host, disk=pg_disk)
            self.redis = PrivateRedis(self.root, redis_port, host=host)
            self.kafka = KafkaCluster(
                self.root / "kafka",
                libs_dir=kafka_libs,
                nodes=nodes,
                network=self.network,
                disks=isolated,
            )
        except BaseException:
            self.release()
            raise
        self.timings: dict[str, float] = {}

    @property
    def disks(self) -> list[SmallDisk]:
        found = [node.disk for node in self.kafka.nodes if node.disk is not None]
        return found + ([self.postgres.disk] if self.postgres.disk is not None else [])

    def heal(self) -> None:
        """Undo every network and disk fault (partitions, slow link, fillers)."""
        if self.network is not None:
            self.network.heal()
            self.network.slow_stop()
        for disk in self.disks:
            if disk.mounted:
                disk.free()

    def release(self) -> None:
        """After ``stop()``: unmount the small filesystems, delete the namespaces."""
        errors: list[str] = []
        for disk in self.disks if hasattr(self, "kafka") else []:
            try:
                disk.unmount()
            except DevstackError as exc:
                errors.append(str(exc))
        if self.network is not None:
            self.network.destroy()
        (self.root / OWNER_FILE).unlink(missing_ok=True)
        if errors:
            raise DevstackError("could not release: " + "; ".join(errors))

    @property
    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.postgres.url,
            "REDIS_URL": self.redis.url,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap,
        }

    def start(self) -> None:
        began = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / OWNER_FILE).write_text(f"{os.getpid()}\n")
        try:
            for disk in self.disks:  # before the servers create anything under them
                disk.mount()
            _parallel(
                [self.postgres.start, self.redis.start, self.kafka.start], "cluster-stack-start"
            )
        except BaseException:
            self.stop()
            raise
        self.timings["start"] = time.monotonic() - began

    def stop(self, *, graceful: bool = True) -> None:
        """Stop everything; ``graceful=False`` SIGKILLs the brokers (their data is disposable)."""
        errors: list[str] = []
        stops: list[Callable[[], None]] = [
            lambda: self.kafka.stop(graceful=graceful),
            self.redis.stop,
            self.postgres.stop,
        ]
        for stop in stops:
            try:
                stop()
            except DevstackError as exc:
                errors.append(str(exc))
        if errors:
            raise DevstackError("could not stop: " + "; ".join(errors))

    def __enter__(self) -> ClusterStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop()
        finally:
            self.release()


OWNER_FILE = "owner.pid"


def reap_leftovers(parent: Path | None = None, prefix: str = "audit-ingest-fault-") -> list[Path]:
    """Clean up after killed runs: servers, mounts and namespaces whose owner is gone.

    Looks at ``parent``/``prefix``* folders (the fault tier's roots) with an ``owner.pid``
    of a dead process: stops its PostgreSQL and Redis (by their pid files), lazily unmounts
    every filesystem under it, deletes the folder. Namespaces are reaped by
    ``devstack.netns.reap_leftovers`` (which also kills the brokers inside them).
    """
    reap_namespaces()
    parent = parent or Path(tempfile.gettempdir())
    reaped: list[Path] = []
    for folder in parent.glob(f"{prefix}*"):
        try:
            owner = int((folder / OWNER_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        leftovers = (PrivatePostgres(folder / "pg", 0), PrivatePostgres(folder, 0))
        for service in (*leftovers, PrivateRedis(folder, 0)):
            with contextlib.suppress(DevstackError):
                service.stop_leftover()
        mounts = [m for m in _mount_points() if m == folder or folder in m.parents]
        for mount in sorted(mounts, key=lambda m: len(m.parts), reverse=True):
            with contextlib.suppress(DevstackError):
                _run(["umount", "-l", str(mount)])
        (folder / OWNER_FILE).unlink(missing_ok=True)
        if not any(m for m in _mount_points() if folder in m.parents):
            shutil.rmtree(folder, ignore_errors=True)
        reaped.append(folder)
        log.warning("removed the leftovers of a killed fault run in %s", folder)
    return reaped


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _mount_points() -> list[Path]:
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return []
    return [Path(line.split()[1].replace("\\040", " ")) for line in lines if len(line.split()) > 1]


def _parallel(calls: Sequence[Callable[[], object]], name: str) -> None:
    """Run ``calls`` in threads; raise the first failure once all have finished."""
    if not calls:
        return
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix=name) as pool:
        futures = [pool.submit(call) for call in calls]
        errors = [exc for future in futures if (exc := future.exception()) is not None]
    if errors:
        raise errors[0]
