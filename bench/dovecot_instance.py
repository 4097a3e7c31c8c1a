"""A throwaway Dovecot 2.3 instance serving given Maildirs over IMAP and POP3 on loopback ports.

Everything lives under one directory: ``dovecot.conf`` (its own config file, started with
``dovecot -F -c CONF``), ``run/`` (base_dir), ``state/``, ``passwd`` (one passwd-file used as
passdb and userdb, clear-text passwords), ``index/<user>`` and ``control/<user>`` (Dovecot's
index and uidlist files, so nothing is written into the Maildirs) and ``dovecot.log``. It
listens on 127.0.0.1 only, without TLS; plaintext log-in is allowed (loopback). The mail
processes run as ``nobody``: Dovecot refuses uid 0, so the Maildir directories and the state
directories are handed to that user (the message files only need to be readable). Passwords
are stored as ARGON2ID hashes (``doveadm pw``, 64 MiB, 3 passes, like MailMax's argon2id), so
that log-ins cost alike; clear text only if that scheme is missing. The system's own Dovecot
configuration is not touched.

Usage (runs until Ctrl-C, then stops)::

    python bench/dovecot_instance.py --maildir /path/to/Maildir [--user bench --password pw]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netutil import LOOPBACK, free_port, require_loopback

DOVECOT = "/usr/sbin/dovecot"
MAIL_USER = "nobody"

CONFIG = """\
base_dir = {base}/run
state_dir = {base}/state
instance_name = mailmax-bench-{port_imap}
log_path = {base}/dovecot.log
protocols = imap pop3
listen = {host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:~/Maildir:INDEX={base}/index/%u:CONTROL={base}/control/%u
passdb {{
  driver = passwd-file
  args = username_format=%u {base}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {base}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = {host}
    port = {port_imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {host}
    port = {port_pop3}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"""


def dovecot_available() -> bool:
    """True when the dovecot binary is installed (dovecot-imapd and dovecot-pop3d)."""
    return os.access(DOVECOT, os.X_OK)


def dovecot_version() -> str:
    """``dovecot --version`` (``?`` when it cannot be run)."""
    try:
        out = subprocess.run(
            [DOVECOT, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        return out.stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def password_hash(password: str) -> str:
    """``{ARGON2ID}...`` from ``doveadm pw``, or ``{PLAIN}password`` when it cannot make one."""
    try:
        out = subprocess.run(
            ["doveadm", "pw", "-s", "ARGON2ID", "-p", password],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "{PLAIN}" + password
    hashed = out.stdout.strip()
    if out.returncode == 0 and hashed.startswith("{ARGON2ID}"):
        return hashed
    return "{PLAIN}" + password


def _greets(host: str, port: int, prefix: bytes) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            return sock.recv(512).startswith(prefix)
    except OSError:
        return False


class DovecotInstance:
    """Dovecot in its own session, serving ``users`` ({name: (password, maildir)})."""

    def __init__(
        self, base: Path, users: dict[str, tuple[str, Path]], host: str = LOOPBACK
    ) -> None:
        self.base = Path(base)
        self.host = require_loopback(host)
        self.users = users
        self.port_imap = free_port(host)
        self.port_pop3 = free_port(host)
        while self.port_pop3 == self.port_imap:
            self.port_pop3 = free_port(host)
        self.config = self.base / "dovecot.conf"
        self.proc: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        """Write the config and passwd file; hand the Maildirs and state to the mail user."""
        entry = pwd.getpwnam(MAIL_USER)
        for sub in ("run", "state", "index", "control", "home"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)
        lines = []
        for name, (password, maildir) in self.users.items():
            home = self.base / "home" / name
            home.mkdir(exist_ok=True)
            link = home / "Maildir"
            if not link.exists():
                link.symlink_to(maildir)
            for directory in (self.base / "index" / name, self.base / "control" / name):
                directory.mkdir(exist_ok=True)
            for path in (home, self.base / "index" / name, self.base / "control" / name):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            for path in (maildir, *(maildir / sub for sub in ("cur", "new", "tmp"))):
                os.chown(path, entry.pw_uid, entry.pw_gid)
            secret = password_hash(password)
            lines.append(f"{name}:{secret}:{entry.pw_uid}:{entry.pw_gid}::{home}::")
        for path in (self.base / "index", self.base / "control", self.base / "home"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        passwd = self.base / "passwd"
        passwd.write_text("\n".join(lines) + "\n")
        os.chmod(passwd, 0o644)  # auth runs unprivileged; clear-text test passwords only
        self.config.write_text(
            CONFIG.format(
                base=self.base, host=self.host, port_imap=self.port_imap, port_pop3=self.port_pop3
            )
        )

    def drop_index(self, name: str) -> None:
        """Remove the index and uidlist files of user ``name`` (no session may be running)."""
        for area in ("index", "control"):
            directory = self.base / area / name
            for entry in list(directory.iterdir()) if directory.is_dir() else []:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink(missing_ok=True)

    def start(self, timeout: float = 30.0) -> None:
        """Start ``dovecot -F -c CONF`` and wait until IMAP and POP3 greet."""
        with (self.base / "dovecot.out").open("ab") as out:
            self.proc = subprocess.Popen(
                [DOVECOT, "-F", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited with {self.proc.returncode}:\n{self.tail()}")
            if _greets(self.host, self.port_imap, b"* OK") and _greets(
                self.host, self.port_pop3, b"+OK"
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"dovecot did not greet within {timeout:.0f} s:\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the master and wait; SIGKILL the whole group after ``timeout`` seconds."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers left in the group

    def restart(self) -> None:
        """A new master process (the index files stay)."""
        self.stop()
        self.start()

    def session_id(self) -> int | None:
        """The session of the master (every Dovecot process is in it)."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def tail(self, lines: int = 15) -> str:
        """The end of Dovecot's log."""
        text = ""
        for name in ("dovecot.out", "dovecot.log"):
            with contextlib.suppress(OSError):
                text += (self.base / name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:]) or "(no log)"


def main(argv: list[str] | None = None) -> int:
    """Serve one Maildir until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--maildir", type=Path, required=True)
    parser.add_argument("--user", default="bench")
    parser.add_argument("--password", default="benchsecret")
    parser.add_argument("--dir", type=Path, default=None, help="instance directory (kept)")
    args = parser.parse_args(argv)
    if not dovecot_available():
        print(f"{DOVECOT} is not installed: apt-get install dovecot-imapd dovecot-pop3d")
        return 1
    base = args.dir or Path(tempfile.mkdtemp(prefix="dovecot-bench-"))
    instance = DovecotInstance(base, {args.user: (args.password, args.maildir.resolve())})
    try:
        instance.prepare()
        instance.start()
        print(f"dovecot: imap {instance.port_imap}, pop3 {instance.port_pop3} in {base}")
        with contextlib.suppress(KeyboardInterrupt):
            while instance.proc is not None and instance.proc.poll() is None:
                time.sleep(0.5)
    finally:
        instance.stop()
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
