"""The routing plugin's settings and how they become a :class:`Route`."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mailmax.core.directory.api import Domain
from mailmax.core.outbound.route import Engine, Route, host_port
from mailmax.plugin import Envelope, PluginSettings

TLS = Literal["none", "may", "encrypt", "verify"]
#: The name of the internal engine (direct MX delivery) in ``engines`` and ``rules``.
DIRECT = "direct"


class SmartHost(BaseModel):
    """One smart host a delivery engine can send through."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Name used in engines and rules.", min_length=1)
    host: str = Field(description="Host name or IP address.", min_length=1)
    port: int = Field(25, ge=1, le=65535, description="SMTP port (587 for submission).")
    username: str = Field("", description="AUTH user name (sent over TLS only).")
    password: str = Field("", description="AUTH password.")
    tls: TLS = Field("may", description="STARTTLS: none, may, encrypt or verify.")

    @field_validator("name")
    @classmethod
    def _not_direct(cls, value: str) -> str:
        if value == DIRECT:
            raise ValueError(f"{DIRECT!r} is the internal engine; choose another name")
        return value

    def engine(self) -> Engine:
        """This smart host as a delivery engine."""
        return Engine(self.name, self.host, self.port, self.tls, self.username, self.password)


class Rule(BaseModel):
    """Try ``engine`` first when every given condition holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: str = Field(description="Engine to try first: 'direct' or a smart host's name.")
    domain: str = Field("", description="Destination domain, '*' wildcards allowed.")
    sender: str = Field("", description="From address, or '@domain' for any address there.")
    larger_than_kb: int = Field(0, ge=0, description="Message size larger than this many KB.")

    @model_validator(mode="after")
    def _has_condition(self) -> Rule:
        if not (self.domain or self.sender or self.larger_than_kb):
            raise ValueError("a rule needs a domain, a sender or larger_than_kb")
        return self

    def matches(self, domain: str, sender: str, size: int) -> bool:
        """True when the message meets every condition of the rule."""
        if self.domain and not fnmatch.fnmatchcase(domain, self.domain.lower()):
            return False
        if self.sender:
            wanted = self.sender.lower()
            if wanted.startswith("@"):
                if not sender.lower().endswith(wanted):
                    return False
            elif sender.lower() != wanted:
                return False
        return not (self.larger_than_kb and size <= self.larger_than_kb * 1024)


class Settings(PluginSettings):
    """Routing settings; the domain level overrides the system level key by key."""

    smart_host_enabled: bool = Field(
        False, description="Send all outbound mail through smart_host."
    )
    smart_host: str = Field("", description="The smart host: 'host' or 'host:port'.")
    smart_host_username: str = Field("", description="AUTH user name at the smart host.")
    smart_host_password: str = Field("", description="AUTH password at the smart host.")
    smart_host_tls: TLS = Field("may", description="STARTTLS with the smart host.")
    engines: list[str] = Field(
        default_factory=lambda: [DIRECT],
        description="Delivery engines in the order tried: 'direct' and smart host names.",
    )
    smart_hosts: list[SmartHost] = Field(
        default_factory=list, description="Smart hosts the engines and rules name."
    )
    rules: list[Rule] = Field(
        default_factory=list, description="Rules choosing the engine tried first."
    )
    tls_policies: dict[str, TLS] = Field(
        default_factory=dict,
        description="STARTTLS for direct delivery per destination domain ('*' wildcards),"
        ' e.g. {"bank.example": "verify"}; others use [queue] tls.',
    )
    relay_tls: TLS = Field("may", description="STARTTLS with relay-to-host delivery hosts.")
    backup_max_days: float = Field(
        30.0, gt=0, description="Backup MX: days to keep retrying the primary."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        names = [h.name for h in self.smart_hosts]
        if len(set(names)) != len(names):
            raise ValueError("two smart hosts have the same name")
        known = {DIRECT, *names}
        for name in [*self.engines, *(r.engine for r in self.rules)]:
            if name not in known:
                raise ValueError(f"engine {name!r} is neither 'direct' nor a smart host's name")
        if not self.engines:
            raise ValueError("engines needs at least one engine")
        if self.smart_host_enabled and not self.smart_host:
            raise ValueError("smart_host_enabled needs smart_host (host or host:port)")
        if self.smart_host:
            host_port(self.smart_host, 25)
        if self.smart_host_username and not self.smart_host_password:
            raise ValueError("smart_host_username needs smart_host_password")
        return self


def relay_route(record: Domain, config: Settings) -> Route:
    """Relay-to-host: everything to the domain's delivery host, no MX look-up."""
    host, port = host_port(record.delivery_host, 25)
    engine = Engine("delivery host", host, port, config.relay_tls)
    return Route((engine,), transit=True, name="relay-to-host")


def backup_route(record: Domain, config: Settings) -> Route:
    """Backup MX: only MX hosts preferred over us; patient retries."""
    engine = Engine("primary MX", below_preference=record.backup_priority or None)
    return Route((engine,), transit=True, patient_days=config.backup_max_days, name="backup MX")


def choose_route(domain: str, envelope: Envelope, config: Settings) -> Route | None:
    """Smart hosting, or the engines in order with the first matching rule's engine first."""
    if config.smart_host_enabled:
        host, port = host_port(config.smart_host, 25)
        engine = Engine(
            "smart host",
            host,
            port,
            config.smart_host_tls,
            config.smart_host_username,
            config.smart_host_password,
        )
        return Route((engine,), name="smart host")
    order = list(config.engines)
    for rule in config.rules:
        if rule.matches(domain, envelope.sender, envelope.size_hint):
            order = [rule.engine, *(name for name in order if name != rule.engine)]
            break
    policy = tls_policy(domain, config.tls_policies)
    if order == [DIRECT] and not policy:
        return None
    hosts = {h.name: h for h in config.smart_hosts}
    direct = Engine(tls=policy)
    engines = tuple(direct if name == DIRECT else hosts[name].engine() for name in order)
    return Route(engines, name=" > ".join(order))


def tls_policy(domain: str, policies: Mapping[str, str]) -> str:
    """The STARTTLS policy for direct delivery to ``domain`` ("" for the default): an exact
    entry first, else the first matching wildcard."""
    if domain in policies:
        return policies[domain]
    for pattern, policy in policies.items():
        if fnmatch.fnmatchcase(domain, pattern.lower()):
            return policy
    return ""
