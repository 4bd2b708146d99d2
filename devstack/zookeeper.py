"""Apache ZooKeeper 3.9 standalone, from Maven Central jars.

Layout: ``.stack/zookeeper/{zoo.cfg,logback.xml,data/}``, classpath
``.stack/lib/zookeeper/`` (from ``devstack/maven/zookeeper/pom.xml``), log
``.stack/logs/zookeeper.log``. Listens on 127.0.0.1:52181; the admin HTTP server is
off and only the ruok/srvr/mntr four-letter words are allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from kazoo.client import KazooClient

from devstack import env
from devstack.java import JavaService

log = logging.getLogger("devstack")


class ZooKeeper(JavaService):
    name = "zookeeper"
    env_var = env.ZOOKEEPER_HOSTS
    ready_timeout = 60.0
    stop_timeout = 30.0
    main_class = "org.apache.zookeeper.server.quorum.QuorumPeerMain"
    # Tiny heap and the serial collector: a test coordinator, on a small machine.
    jvm_flags = ("-Xms64m", "-Xmx256m", "-XX:+UseSerialGC")

    @property
    def config(self) -> Path:
        return self.dir / "zoo.cfg"

    @property
    def logback_config(self) -> Path:
        return self.dir / "logback.xml"

    def local_ports(self) -> Sequence[int]:
        return (env.ZOOKEEPER_PORT,)

    def pid_markers(self) -> Sequence[str]:
        return (self.main_class, str(self.config))

    def probe(self, url: str, timeout: float) -> bool:
        """Open a real session with kazoo and read the root node."""
        client = KazooClient(hosts=url, timeout=10.0)
        try:
            client.start(timeout=timeout)
            return client.exists("/") is not None
        finally:
            client.stop()
            client.close()

    def launch(self) -> None:
        self.paths.ensure()
        self.prepare_jars()
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        self._write_configs(data)
        self.spawn(
            [self.config],
            extra=[f"-Dlogback.configurationFile={self.logback_config}"],
        )

    def _write_configs(self, data: Path) -> None:
        # Rewritten on every start so code changes apply; the data stays.
        settings = {
            "tickTime": "2000",
            "dataDir": str(data),
            "clientPort": str(env.ZOOKEEPER_PORT),
            "clientPortAddress": env.LOCAL_HOST,
            # Many executors and tests connect from 127.0.0.1; the default cap
            # of 60 connections per IP would refuse some of them.
            "maxClientCnxns": "0",
            "admin.enableServer": "false",
            "4lw.commands.whitelist": "ruok,srvr,mntr",
            # Keep the data dir from growing without bound.
            "autopurge.snapRetainCount": "3",
            "autopurge.purgeInterval": "1",
        }
        self.config.write_text(
            "# Written by devstack on every start; see devstack/zookeeper.py\n"
            + "".join(f"{key}={value}\n" for key, value in settings.items())
        )
        # Logback's default configuration logs DEBUG to the console; send INFO to
        # the log file instead (stdout, also the log file, keeps JVM errors).
        self.logback_config.write_text(
            f"""<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{escape(str(self.log_file))}</file>
    <append>true</append>
    <encoder>
      <pattern>%d{{ISO8601}} %-5level [%thread] %logger{{1}} - %msg%n</pattern>
    </encoder>
  </appender>
  <root level="INFO">
    <appender-ref ref="FILE"/>
  </root>
</configuration>
"""
        )
