"""A private fault-testing stack: a 3-node KRaft cluster, PostgreSQL and Redis on loopback.

Built for the fault tier (``tests/fault``): every server is private to this object (the
``DATABASE_URL`` / ``REDIS_URL`` / ``KAFKA_BOOTSTRAP_SERVERS`` of the shell are ignored), so a
test may kill, pause or stop any of them without touching the session stack or ``make run``.

The Kafka cluster is N combined broker+controller nodes (3 by default: the fastest layout to
start on 2 cores, one JVM per node) run from the same Maven jars as ``LocalStack``
(``.dev/kafka-libs``). Replication factor 3, ``min.insync.replicas`` 2 and unclean leader
election off are the broker defaults here, so a topic created without settings is durable.

```python
with ClusterStack(root, kafka_libs=Path(".dev/kafka-libs")) as stack:
    stack.env["KAFKA_BOOTSTRAP_SERVERS"]       # 127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3
    leader = stack.kafka.partition_leader("t", 0)
    stack.kafka.kill(leader)                   # SIGKILL
    stack.kafka.start_nodes([leader])          # back, and waits until it answers
```
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
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
    KafkaNode,
    load_or_create_cluster_id,
    log4j2_properties,
    plan_nodes,
    render_properties,
    server_properties,
)
from devstack.kafka_libs import ensure_kafka_libs
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
    ) -> None:
        super().__init__(node.home, ready_timeout=ready_timeout)
        self.node = node
        self.cluster = list(cluster)
        self.cluster_id_file = cluster_id_file
        self.libs_dir = libs_dir
        self.heap = heap
        self.overrides = dict(overrides or {})
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

    def local_url(self) -> str:
        return self.node.bootstrap

    def ports(self) -> dict[str, int]:
        return {
            f"kafka node {self.node_id}": self.node.broker_port,
            f"kafka node {self.node_id} controller": self.node.controller_port,
        }

    def properties(self) -> dict[str, str]:
        return {**server_properties(self.node, self.cluster), **self.overrides}

    def prepare(self) -> None:
        ensure_kafka_libs(self.libs_dir)
        self._java = ensure_java()
        node = self.node
        node.home.mkdir(parents=True, exist_ok=True)
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
        return [*self._java_argv("kafka.Kafka"), str(self.node.properties_file)]

    def probe(self, url: str) -> bool:
        if not port_accepts(self.node.broker_port):
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
    ) -> None:
        self.home = home.resolve()
        self.libs_dir = libs_dir.resolve()
        if broker_ports is None or controller_ports is None:
            ports = free_ports(2 * nodes)
            broker_ports, controller_ports = ports[:nodes], ports[nodes:]
        plan = plan_nodes(self.home, broker_ports, controller_ports)
        merged = {**CLUSTER_OVERRIDES, **(overrides or {})}
        self.nodes: list[KafkaNodeService] = [
            KafkaNodeService(
                node,
                plan,
                cluster_id_file=self.home / "cluster.id",
                libs_dir=self.libs_dir,
                heap=heap,
                overrides=merged,
                ready_timeout=ready_timeout,
            )
            for node in plan
        ]
        self.timings: dict[str, float] = {}

    @property
    def bootstrap(self) -> str:
        return ",".join(node.node.bootstrap for node in self.nodes)

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
    def admin(self) -> AdminClient:
        return AdminClient(
            {
                "bootstrap.servers": self.bootstrap,
                "log_level": 0,
                "socket.connection.setup.timeout.ms": 3000,
            }
        )

    def partition_leader(self, topic: str, partition: int, timeout: float = 10.0) -> int:
        """The node id leading ``topic``/``partition`` (per the cluster's metadata)."""
        metadata = self.admin().list_topics(topic, timeout=timeout)
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


class PrivatePostgres(PostgresService):
    """PostgreSQL that ignores DATABASE_URL: the fault tier stops it at will."""

    @property
    def external_url(self) -> str | None:
        return None


class PrivateRedis(RedisService):
    """Redis that ignores REDIS_URL: the fault tier stops it at will."""

    @property
    def external_url(self) -> str | None:
        return None

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None:
            try:
                os.kill(self.process.pid, sig)
            except ProcessLookupError:
                return


class ClusterStack:
    """A KafkaCluster plus private PostgreSQL and Redis under ``root`` (free loopback ports)."""

    def __init__(self, root: Path, *, kafka_libs: Path, nodes: int = 3) -> None:
        self.root = root.resolve()
        pg_port, redis_port = free_ports(2)
        self.postgres = PrivatePostgres(self.root, pg_port)
        self.redis = PrivateRedis(self.root, redis_port)
        self.kafka = KafkaCluster(self.root / "kafka", libs_dir=kafka_libs, nodes=nodes)
        self.timings: dict[str, float] = {}

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
        try:
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
        self.stop()


def _parallel(calls: Sequence[Callable[[], object]], name: str) -> None:
    """Run ``calls`` in threads; raise the first failure once all have finished."""
    if not calls:
        return
    with ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix=name) as pool:
        futures = [pool.submit(call) for call in calls]
        errors = [exc for future in futures if (exc := future.exception()) is not None]
    if errors:
        raise errors[0]
