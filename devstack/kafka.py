"""Apache Kafka 4.x, single node in KRaft combined mode, from Maven Central jars.

Layout: ``.stack/kafka/{server.properties,log4j2.properties,cluster.id,data/}``,
classpath ``.stack/lib/kafka/`` (from ``devstack/maven/kafka/pom.xml``), log
``.stack/logs/kafka.log``. Clients use 127.0.0.1:59092, the controller
127.0.0.1:59093. The storage is formatted once (``StorageTool format --standalone``,
a single-voter dynamic quorum) with a cluster id kept in ``cluster.id``; later starts
reuse it.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka.admin import AdminClient

from devstack import env, process
from devstack.java import JavaService

log = logging.getLogger("devstack")

NODE_ID = 1
FORMAT_TIMEOUT = 120.0


def new_cluster_id() -> str:
    """A Kafka-style random Uuid: 16 bytes, URL-safe base64, no padding (what
    ``kafka-storage random-uuid`` prints)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # Kafka rejects ids starting with "-" too: they look like CLI options.
        if not text.startswith("-"):
            return text


class Kafka(JavaService):
    name = "kafka"
    env_var = env.KAFKA_BOOTSTRAP_SERVERS
    # The first KRaft start (format, quorum bootstrap, metadata) takes a while,
    # especially with two cores shared with ZooKeeper's JVM.
    ready_timeout = 120.0
    # A controlled shutdown of the combined broker+controller can be slow.
    stop_timeout = 60.0
    probe_timeout = 3.0
    main_class = "kafka.Kafka"
    jvm_flags = ("-Xms256m", "-Xmx768m")

    @property
    def config(self) -> Path:
        return self.dir / "server.properties"

    @property
    def log4j_config(self) -> Path:
        return self.dir / "log4j2.properties"

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def cluster_id_file(self) -> Path:
        return self.dir / "cluster.id"

    def local_ports(self) -> Sequence[int]:
        return (env.KAFKA_PORT, env.KAFKA_CONTROLLER_PORT)

    def pid_markers(self) -> Sequence[str]:
        return (self.main_class, str(self.config))

    def probe(self, url: str, timeout: float) -> bool:
        """A metadata request through librdkafka's AdminClient that lists at least
        one broker (fenced or unregistered brokers are not listed)."""
        admin = AdminClient(
            {
                "bootstrap.servers": url,
                # Quiet: refused connections while waiting are expected, and
                # librdkafka would print each one to stderr.
                "log_level": 0,
                "socket.timeout.ms": int(timeout * 1000),
            }
        )
        metadata = admin.list_topics(timeout=timeout)
        return bool(metadata.brokers)

    # ------------------------------------------------------------------ start
    def launch(self) -> None:
        self.paths.ensure()
        self.prepare_jars()
        self.data.mkdir(parents=True, exist_ok=True)
        self._write_configs()
        log4j = f"-Dlog4j2.configurationFile={self.log4j_config}"
        if not (self.data / "meta.properties").exists():
            self._format(log4j)
        self.spawn([self.config], extra=[log4j])

    def _cluster_id(self) -> str:
        try:
            return self.cluster_id_file.read_text().strip()
        except FileNotFoundError:
            cluster_id = new_cluster_id()
            self.cluster_id_file.write_text(cluster_id + "\n")
            return cluster_id

    def _format(self, log4j: str) -> None:
        """Format the log dir once: meta.properties there marks it as done, so a
        restart never wipes the data."""
        cluster_id = self._cluster_id()
        log.info(
            "%s: first start: formatting storage (cluster %s)", self.name, cluster_id
        )
        process.run(
            self.java_argv(
                "kafka.tools.StorageTool",
                [
                    "format",
                    "--config",
                    self.config,
                    "--cluster-id",
                    cluster_id,
                    # 4.x dynamic quorum of just this controller; goes with
                    # controller.quorum.bootstrap.servers (not ...voters).
                    "--standalone",
                ],
                extra=["-Xmx256m", log4j],
            ),
            log_file=self.log_file,
            timeout=FORMAT_TIMEOUT,
            cwd=self.dir,
        )

    def _write_configs(self) -> None:
        host = env.LOCAL_HOST
        client = f"{host}:{env.KAFKA_PORT}"
        controller = f"{host}:{env.KAFKA_CONTROLLER_PORT}"
        settings = {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "controller.quorum.bootstrap.servers": controller,
            "listeners": f"PLAINTEXT://{client},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{client}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
            ),
            "log.dirs": str(self.data),
            "num.partitions": "1",
            # One broker: every internal topic must make do with one replica.
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            # Tests start consumers and expect assignments at once.
            "group.initial.rebalance.delay.ms": "0",
            # Topics are created explicitly by the project; typos must fail.
            "auto.create.topics.enable": "false",
        }
        self.config.write_text(
            "# Written by devstack on every start; edit devstack/kafka.py.\n"
            + "".join(f"{key}={value}\n" for key, value in settings.items())
        )
        # Kafka 4.x logs via slf4j -> log4j2. Everything goes to the log file; the
        # JVM's stdout (same file) then only carries crashes and warnings.
        self.log4j_config.write_text(
            f"""# Written by devstack on every start; edit devstack/kafka.py.
status = warn
name = broker-stack-kafka
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {self.log_file}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
# Per-request logging is only useful when debugging the broker itself.
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""
        )
