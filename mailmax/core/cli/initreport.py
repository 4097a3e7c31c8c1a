"""What ``mailmax init`` writes and prints: the commented config file and the final report."""

from __future__ import annotations

import datetime
import ipaddress
import json
from typing import TYPE_CHECKING, Any

from mailmax.core.cli.context import app, safe_url

if TYPE_CHECKING:
    from mailmax.core.cli.init import Plan

FIRST_USERS = ("postmaster", "admin", "root")


def _q(value: Any) -> str:
    """A TOML value (JSON strings and numbers are valid TOML)."""
    return json.dumps(value, ensure_ascii=False)


def config_text(plan: Plan) -> str:
    """The commented config file for ``plan``."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    services = {
        "smtp": "inbound mail from other servers",
        "submission": "mail from your users: STARTTLS, then AUTH",
        "smtps": "like submission, with TLS from the first byte",
        "pop3": "mail reading with POP3 (STLS, then USER/PASS or APOP)",
        "pop3s": "POP3 with TLS from the first byte",
        "imap": "mail reading with IMAP4 (STARTTLS, then LOGIN)",
        "imaps": "IMAP4 with TLS from the first byte",
    }
    listeners = "".join(
        f"\n[[listeners]]\nservice = {_q(name)}  # {about}\naddress = {_q(plan.address)}\n"
        f"port = {plan.ports[name]}\ndefault_domain = {_q(plan.domain)}"
        "  # domain of bare login names on this address\n"
        for name, about in services.items()
    )
    return f"""\
# MailMax configuration, written by `mailmax init` on {now}.
# Check it with: mailmax config check --config {plan.config_file}
# See every key with its default: mailmax config show --config {plan.config_file}
# Relative paths are relative to data_dir.

[server]
# Name used in greetings, Received headers and bounces.
hostname = {_q(plan.hostname)}
# Data directory: database, logs, plugins.
data_dir = {_q(str(plan.data_dir))}
# Directory database (SQLAlchemy URL): SQLite here; PostgreSQL for several nodes.
database_url = {_q(plan.database_url)}
# Log file, one line per event; empty disables it.
log_file = "mailmax.log"

[tls]
# Certificate (PEM chain) and private key for STARTTLS and implicit TLS. `mailmax init`
# made a self-signed pair; replace both files with a real certificate for the Internet.
cert = {_q(str(plan.cert))}
key = {_q(str(plan.key))}
min_version = "1.2"

# Listening sockets. Ports below 1024 need root (or CAP_NET_BIND_SERVICE); the standard
# ports are smtp 25, submission 587, smtps 465, pop3 110, pop3s 995, imap 143, imaps 993.
{listeners}
[smtp]
# Largest message in bytes.
max_message_size = 26214400
# Client networks allowed to relay without AUTH, e.g. ["192.0.2.0/24"]. Keep it short.
trusted_networks = []

[spool]
# Queue directory: accepted mail waiting for delivery.
dir = {_q(str(plan.queue_dir))}

[admin]
# The HTTPS admin API (see docs/admin-api.md), with the certificate above. Make API tokens
# with `mailmax admin token create admin@{plan.domain} --name NAME`.
enabled = true
address = "127.0.0.1"
port = {plan.admin_port}

[plugins]
# Plugins enabled system-wide, in hook order (see `mailmax plugin list`).
enabled = [
    "bans", "sendercheck", "limits", "aliases", "spamtrap", "forwarding", "monitor", "catchall",
]
"""


def _client_examples(plan: Plan) -> list[str]:
    host = plan.address
    if ipaddress.ip_address(host).is_unspecified:
        host = "127.0.0.1" if ipaddress.ip_address(host).version == 4 else "::1"
    port, user = plan.ports["submission"], f"postmaster@{plan.domain}"
    python = (
        f"python3 -c \"import smtplib, ssl; s = smtplib.SMTP('{host}', {port}); "
        f"s.starttls(context=ssl.create_default_context(cafile='{plan.cert}')); "
        f"s.login('{user}', 'PASSWORD'); "
        f"s.sendmail('{user}', ['admin@{plan.domain}'], 'Subject: test\\r\\n\\r\\nhello\\r\\n'); "
        's.quit()"'
    )
    swaks = (
        f"swaks --server {host} --port {port} --tls --tls-verify --tls-ca-path {plan.cert} "
        "--tls-sni localhost "
        f"--auth PLAIN --auth-user {user} --auth-password 'PASSWORD' "
        f"--from {user} --to admin@{plan.domain}"
    )
    return [python, swaks]


def report(plan: Plan, done: dict[str, Any]) -> None:
    """Print what ``init`` made, the generated passwords (once) and the next steps."""
    out = app().out
    users: list[dict[str, Any]] = [
        {
            "address": f"{u}@{plan.domain}",
            "password": plan.passwords[u] if u in plan.generated else None,
            "password_generated": u in plan.generated,
        }
        for u in FIRST_USERS
    ]
    start = f"twistd -n --pidfile= mailmax --data-dir {plan.data_dir}"
    if out.as_json:
        out.done(
            f"MailMax is set up in {plan.data_dir}",
            **{
                "data_dir": plan.data_dir,
                "config": plan.config_file,
                "database_url": safe_url(plan.database_url),
                "domain": plan.domain,
                "mail_dir": plan.mail_dir,
                "queue_dir": plan.queue_dir,
                "hostname": plan.hostname,
                "tls": {"cert": plan.cert, "key": plan.key, "created": done["new_certificate"]},
                "listeners": [
                    {"service": s, "address": plan.address, "port": p}
                    for s, p in plan.ports.items()
                ],
                "users": users,
                "admin_api": {
                    "url": f"https://127.0.0.1:{plan.admin_port}/api/v1/",
                    "system_admin": f"admin@{plan.domain}",
                },
                "moved_aside": done["moved_aside"],
                "start_command": start,
            },
        )
        return
    cert_note = "self-signed, new" if done["new_certificate"] else "existing files kept"
    lines = [
        f"MailMax is set up in {plan.data_dir}",
        f"  config:      {plan.config_file}",
        f"  database:    {safe_url(plan.database_url)}",
        f"  domain:      {plan.domain} (mail in {plan.mail_dir})",
        f"  queue:       {plan.queue_dir}",
        f"  certificate: {plan.cert} ({cert_note})",
        "  listeners:   " + ", ".join(f"{s} {plan.address}:{p}" for s, p in plan.ports.items()),
        f"  users:       {', '.join(u['address'] for u in users)}",
        f"  admin API:   https://127.0.0.1:{plan.admin_port}/api/v1/ "
        f"(system administrator admin@{plan.domain})",
    ]
    lines += [f"  kept old:    {p}" for p in done["moved_aside"]]
    if plan.generated:
        lines += ["", "Generated passwords (shown only this once; store them now):"]
        lines += [f"  {u['address']:<40} {u['password']}" for u in users if u["password"]]
    python, swaks = _client_examples(plan)
    lines += [
        "",
        "Next steps:",
        "  1. Start the server:",
        f"       {start}",
        "  2. Send a test message through submission (PASSWORD: postmaster's password):",
        f"       {python}",
        "     or:",
        f"       {swaks}",
        f"  3. Check the configuration: mailmax config check --config {plan.config_file}",
    ]
    out.lines(lines)
