"""What every section of the configuration is built from: the section base class, the marker
of keys applied only by a restart, and the checks of addresses and networks."""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from pydantic import BaseModel, ConfigDict


class ConfigError(Exception):
    """The configuration is not usable; the message names the file, the key and what is allowed."""


#: ``json_schema_extra`` of a key a running server applies only when restarted (every other
#: key is applied by ``mailmax reload``, SIGHUP and the admin channel).
RESTART: dict[str, Any] = {"reload": "restart"}


def needs_restart(model: type[BaseModel], key: str) -> bool:
    """True when ``key`` of the section ``model`` is applied only by a restart."""
    extra = model.model_fields[key].json_schema_extra
    return isinstance(extra, dict) and extra.get("reload") == "restart"


def check_networks(values: list[str]) -> list[str]:
    """``values`` unchanged when each is an IP address or network, else :class:`ValueError`.

    An address stands for itself (``192.0.2.7``), a network is written with its prefix length
    (``198.51.100.0/24``, ``2001:db8::/32``); host bits may be set (``192.0.2.7/24``). The
    error names the first value that is neither. Meant for a pydantic ``field_validator`` of
    a ``list[str]`` setting, where the error becomes the setting's message.
    """
    for value in values:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError(f"{value!r} is not an address or network") from None
    return values


@functools.lru_cache(maxsize=64)
def parse_networks(
    values: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """``values`` (checked by :func:`check_networks`) as network objects; cached, so a
    setting read from the live configuration on every connection is parsed once."""
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


class Section(BaseModel):
    """A table of the configuration file: unknown keys refused, values frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def check_ip(value: str) -> str:
    """``value`` unchanged when it is an IP address, else :class:`ValueError` saying so."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address (e.g. 127.0.0.1 or ::1)") from None
    return value
