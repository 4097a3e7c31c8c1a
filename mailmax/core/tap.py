"""``twistd mailmax``: command-line options and the service maker behind the dropin."""

from __future__ import annotations

import os
from pathlib import Path

from twisted.python import usage

from mailmax.core.config import DEFAULT_CONFIG_NAME, ConfigError

SYSTEM_CONFIG = Path("/etc/mailmax/mailmax.toml")


class Options(usage.Options):
    """Options of ``twistd mailmax``."""

    synopsis = "[--config FILE | --data-dir DIR]"
    longdesc = (
        "Runs MailMax in one process: SMTP (inbound mail and submission with STARTTLS or "
        "implicit TLS), POP3 and IMAP4 (each with STARTTLS/STLS or implicit TLS), the queue "
        "runner with local and remote delivery, and the admin socket that `mailmax reload` "
        "uses (SIGHUP reloads too). The config file is --config FILE; else, with --data-dir, "
        "DATA_DIR/mailmax.toml; else $MAILMAX_CONFIG; else ./mailmax.toml; else "
        "/etc/mailmax/mailmax.toml. Create a system with `mailmax init --data-dir DIR`."
    )
    optParameters = [
        ["config", "c", None, "Path to the mailmax.toml config file."],
        [
            "data-dir",
            "d",
            None,
            "Data directory holding mailmax.toml (used when --config is not given).",
        ],
    ]

    def postOptions(self) -> None:
        """Work out which config file to use."""
        self["config_path"] = config_path(self["config"], self["data-dir"])


def config_path(config: str | None, data_dir: str | None) -> Path:
    """The config file chosen from the options and the environment."""
    if config:
        return Path(config)
    if data_dir:
        return Path(data_dir) / DEFAULT_CONFIG_NAME
    if os.environ.get("MAILMAX_CONFIG"):
        return Path(os.environ["MAILMAX_CONFIG"])
    local = Path(DEFAULT_CONFIG_NAME)
    if not local.exists() and SYSTEM_CONFIG.exists():
        return SYSTEM_CONFIG
    return local


def makeService(options: Options):
    """Build the MailMax service, or stop twistd with a message that says what to fix."""
    from mailmax.core.service import make_service
    from mailmax.core.tls import TLSConfigError

    try:
        return make_service(options["config_path"])
    except (ConfigError, TLSConfigError) as exc:
        raise SystemExit(f"mailmax: {exc}") from None
