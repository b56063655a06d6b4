"""Kafka KRaft configuration: node plan, server.properties, log4j2 config, cluster id.

Written for N nodes in combined mode (broker+controller per process) so a
3-node cluster is ``plan_nodes(home, [p1, p2, p3], [c1, c2, c3])``; with one
node the layout is flat: ``<home>/server.properties``, ``<home>/data``,
``<home>/server.log``; with more, each node lives in ``<home>/node-<id>/``.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"


@dataclass(frozen=True)
class KafkaNode:
    """One KRaft node in combined mode."""

    node_id: int
    broker_port: int
    controller_port: int
    home: Path

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def properties_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.home / "log4j2.properties"

    @property
    def server_log(self) -> Path:
        return self.home / "server.log"

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.broker_port}"


def plan_nodes(
    home: Path, broker_ports: Sequence[int], controller_ports: Sequence[int]
) -> list[KafkaNode]:
    if len(broker_ports) != len(controller_ports) or not broker_ports:
        raise ValueError("need one broker port and one controller port per node")
    single = len(broker_ports) == 1
    return [
        KafkaNode(i, bp, cp, home if single else home / f"node-{i}")
        for i, (bp, cp) in enumerate(zip(broker_ports, controller_ports, strict=True), 1)
    ]


def server_properties(node: KafkaNode, cluster: Sequence[KafkaNode]) -> dict[str, str]:
    replicas = min(3, len(cluster))
    min_isr = min(2, replicas)
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in cluster)
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{HOST}:{node.broker_port},CONTROLLER://{HOST}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{node.broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(node.data_dir),
        "num.partitions": "1",
        "default.replication.factor": str(replicas),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(replicas),
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "auto.create.topics.enable": "false",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }


def render_properties(props: dict[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in props.items())


def log4j2_properties(log_file: Path) -> str:
    """log4j2 config: INFO to ``log_file``, no console output."""
    return "\n".join(
        [
            "status = warn",
            "appender.file.type = File",
            "appender.file.name = file",
            f"appender.file.fileName = {log_file}",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.file.ref = file",
            "logger.kafka-request.name = kafka.request.logger",
            "logger.kafka-request.level = WARN",
            "",
        ]
    )


def new_cluster_id() -> str:
    """A random id in Kafka's Uuid text form (22 url-safe base64 chars, no leading '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def load_or_create_cluster_id(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    cluster_id = new_cluster_id()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(cluster_id + "\n")
    tmp.replace(path)
    return cluster_id
