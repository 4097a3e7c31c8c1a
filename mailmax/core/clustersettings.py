"""``[cluster]``: this node's name and every node of a cluster of MailMax servers."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from mailmax.core.configbase import RESTART, Section, check_ip


class ClusterNodeSettings(Section):
    """One node of a cluster, as every node reaches it."""

    address: str = Field(description="The node's internal IP address.", json_schema_extra=RESTART)
    smtp_port: int = Field(
        ge=1,
        le=65535,
        description="Port of its node-to-node SMTP listener.",
        json_schema_extra=RESTART,
    )
    pop3s_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Its POP3 over TLS port (for proxied log-ins); 0 = none.",
        json_schema_extra=RESTART,
    )
    imaps_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Its IMAP over TLS port (proxied log-ins, referrals); 0 = none.",
        json_schema_extra=RESTART,
    )
    imap_host: str = Field(
        "",
        description="Host name IMAP referrals send clients to; empty = the address.",
        json_schema_extra=RESTART,
    )
    transfer_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port (TLS) on which it takes mailboxes moved to it; 0 = none.",
        json_schema_extra=RESTART,
    )

    @field_validator("address")
    @classmethod
    def _ip(cls, value: str) -> str:
        return check_ip(value)


class ClusterSettings(Section):
    """Clustered domains: this node's name and every node of the cluster."""

    node: str = Field(
        "",
        description="This node's name; empty = not part of a cluster.",
        json_schema_extra=RESTART,
    )
    secret: str = Field(
        "",
        description="Shared secret the nodes authenticate each other with (16+ characters).",
        json_schema_extra=RESTART,
    )
    tls_ca_file: str = Field(
        "",
        description="CA certificates that sign the nodes' certificates; empty = encrypt"
        " node-to-node connections without checking certificates (the secret still"
        " authenticates the nodes).",
        json_schema_extra=RESTART,
    )
    imap_logins: Literal["proxy", "referral"] = Field(
        "proxy",
        description="IMAP log-ins on a node that is not the user's home: proxy ="
        " relay the session to the home node, referral = answer with an RFC 2221 referral.",
    )
    proxy_connect_timeout: float = Field(
        10.0,
        gt=0,
        le=120,
        description="Seconds to reach the home node for a proxied log-in.",
    )
    nodes: dict[str, ClusterNodeSettings] = Field(
        default_factory=dict,
        description="`[cluster.nodes.NAME]` tables: every node, this one too.",
        json_schema_extra=RESTART,
    )

    @model_validator(mode="after")
    def _complete(self) -> ClusterSettings:
        if not self.node:
            return self
        if self.node not in self.nodes:
            raise ValueError(
                f"node {self.node!r} has no [cluster.nodes.{self.node}] table (its address and"
                " ports)"
            )
        if len(self.secret) < 16:
            raise ValueError("a cluster needs a shared secret of at least 16 characters")
        return self

    @property
    def enabled(self) -> bool:
        """True when this server is a node of a cluster."""
        return bool(self.node)
