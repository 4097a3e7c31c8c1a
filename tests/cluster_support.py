"""Two MailMax nodes, ``a`` on 127.0.0.1 and ``b`` on 127.0.0.2, sharing one PostgreSQL directory.

The domain ``example.test`` is clustered with home node ``a``; ``alice`` lives on ``a`` and
``bob`` on ``b``. Each node has its own data directory, so its own spool, queue and mail: the
domain's mail directory is relative (``mail/example.test``), under each node's data directory.
"""

from __future__ import annotations

import shutil
import smtplib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from mailmax.core.directory.sql import SQLDirectory
from mailmax.core.tls import write_self_signed
from tests.fixtures.ports import free_port
from tests.fixtures.postgres import new_database
from tests.fixtures.server import DOMAIN, MailMaxServer, write_config

SECRET = "cluster-test-secret-0123456789"
#: A test plugin on both nodes: a note made where mail arrives picks its folder where it is stored.
NOTETAG = Path(__file__).parent / "plugins" / "notetag.py"
ADDRESSES = {"a": "127.0.0.1", "b": "127.0.0.2"}
PASSWORDS = {
    "alice": "alicesecret",
    "bob": "bobsecret",
    "carol": "carolsecret",
    "dave": "davesecret",
}


class Node(MailMaxServer):
    """A cluster node: a MailMax server whose directory is the shared PostgreSQL database."""

    def __init__(self, name: str, data_dir: Path, sections: dict[str, Any], url: str) -> None:
        super().__init__(data_dir, sections)
        self.name = name
        self.address = ADDRESSES[name]
        self.url = url

    def prepare(self) -> None:
        """Write the config and the certificate (the directory is shared and set up once)."""
        write_config(self.config_path, self.sections)
        write_self_signed(self.cert_path, self.key_path, ["localhost", f"{self.name}.example.test"])

    def directory(self) -> Any:
        """The shared directory (close it after use)."""
        return SQLDirectory.open(self.url, base_dir=self.data_dir)


def cluster_nodes(base: Path, url: str, **cluster: Any) -> dict[str, Node]:
    """Configure (not start) nodes ``a`` and ``b``; ``cluster`` overrides ``[cluster]`` keys."""
    ports = {
        name: {
            "smtp_port": free_port(),
            "pop3s_port": free_port(),
            "imaps_port": free_port(),
            "transfer_port": free_port(),
        }
        for name in ADDRESSES
    }
    nodes = {name: {"address": ADDRESSES[name], **ports[name]} for name in ADDRESSES}
    found = {}
    for name, address in ADDRESSES.items():
        data_dir = base / f"node-{name}"
        data_dir.mkdir()
        sections: dict[str, Any] = {
            "server": {
                "hostname": f"{name}.example.test",
                "shutdown_grace_seconds": 3.0,
                "database_url": url,
                "directory_cache_seconds": 0.2,
            },
            "listeners": [
                {"service": "smtp", "address": address, "port": 0, "default_domain": DOMAIN},
                {"service": "pop3", "address": address, "port": 0, "default_domain": DOMAIN},
                {"service": "imap", "address": address, "port": 0, "default_domain": DOMAIN},
                {
                    "service": "pop3s",
                    "address": address,
                    "port": ports[name]["pop3s_port"],
                    "default_domain": DOMAIN,
                },
                {
                    "service": "imaps",
                    "address": address,
                    "port": ports[name]["imaps_port"],
                    "default_domain": DOMAIN,
                },
            ],
            "pop3": {"allow_plaintext_auth": True},
            "imap": {"allow_plaintext_auth": True},
            "queue": {"scan_interval": 0.5, "retry_minutes": 0.01, "max_retries": 1000},
            "auth": {"failure_delay": 0.0, "max_failure_delay": 0.0},
            "plugins": {"enabled": ["notetag"]},
            "admin": {"enabled": True, "port": 0},
            "cluster": {"node": name, "secret": SECRET, **cluster},
        }
        node = Node(name, data_dir, sections, url)
        node.prepare()
        (data_dir / "plugins").mkdir()
        shutil.copy(NOTETAG, data_dir / "plugins" / "notetag.py")
        # nested tables: [cluster.nodes.a] ...
        text = node.config_path.read_text()
        for other, settings in nodes.items():
            text += f"\n[cluster.nodes.{other}]\n" + "".join(
                f"{key} = {value!r}\n".replace("'", '"') for key, value in settings.items()
            )
        node.config_path.write_text(text)
        found[name] = node
    return found


def seed(url: str, base_dir: Path) -> None:
    """The clustered domain and its users: alice and carol on a (the domain's home), bob and
    dave (clear password kept, for APOP) on b."""
    directory = SQLDirectory.open(url, base_dir=base_dir)
    try:
        directory.add_domain(DOMAIN, "mail/example.test", type="clustered", home_node="a")
        directory.add_user(f"postmaster@{DOMAIN}", "postmastersecret")
        directory.add_user(f"alice@{DOMAIN}", PASSWORDS["alice"])
        directory.add_user(f"bob@{DOMAIN}", PASSWORDS["bob"], home_node="b")
        directory.add_user(f"carol@{DOMAIN}", PASSWORDS["carol"])
        directory.add_user(f"dave@{DOMAIN}", PASSWORDS["dave"], keep_clear=True, home_node="b")
    finally:
        directory.close()


def running_nodes(
    postgres: str, tmp_path_factory: pytest.TempPathFactory, **cluster: Any
) -> Iterator[dict[str, Node]]:
    """Start nodes a and b on a new shared database; stop them afterwards (for fixtures)."""
    base = tmp_path_factory.mktemp("cluster")
    with new_database(postgres) as url:
        seed(url, base)
        found = cluster_nodes(base, url, **cluster)
        try:
            with ThreadPoolExecutor(len(found)) as pool:  # the nodes start side by side
                list(pool.map(lambda node: node.start(timeout=60), found.values()))
            yield found
        finally:
            for node in found.values():
                try:
                    node.stop(timeout=15)
                except Exception:
                    node.kill()


def peer_port(node: Node) -> int:
    """The node-to-node SMTP port of ``node``."""
    text = node.config_path.read_text()
    section = text.split(f"[cluster.nodes.{node.name}]")[1]
    line = next(item for item in section.splitlines() if item.startswith("smtp_port"))
    return int(line.split("=")[1])


def send(node: Node, recipient: str, subject: str) -> None:
    """Send a message to ``recipient`` through ``node``'s public SMTP listener."""
    message = EmailMessage()
    message["From"] = "sender@elsewhere.test"
    message["To"] = recipient
    message["Subject"] = subject
    message.set_content(f"{subject}\n")
    with smtplib.SMTP(node.address, node.ports["smtp"], timeout=10) as client:
        client.send_message(message)
