"""A throwaway Postfix instance on a loopback port, delivering one domain into one Maildir.

Everything lives under one temporary directory: ``etc/`` (config_directory: main.cf and a
minimal master.cf), ``spool/`` (queue_directory), ``data/`` (data_directory), ``mail/`` (the
virtual mailbox base; every recipient of the domain lands in ``mail/bench/``) and ``maillog``.
smtpd listens on ``127.0.0.1:PORT`` only; no DNS lookups; no chroot. Started with
``postfix -c DIR start`` and stopped with ``postfix -c DIR stop`` (then ``abort`` and SIGKILL of
the master, bounded, if it lingers). The system's own Postfix configuration is not touched.

Usage (runs until Ctrl-C, then stops and removes the instance)::

    python bench/postfix_instance.py [--port P] [--keep]
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from instance import ThrowawayInstance, arguments, serve
from netutil import wait_for_smtp

POSTFIX = "/usr/sbin/postfix"
SMTP_SOURCE_PATHS = ("/usr/sbin/smtp-source", "/usr/bin/smtp-source")
MAILBOX_UID = 65534  # nobody: virtual(8) refuses root, and the mail files need an owner

# service type private unpriv chroot wakeup maxproc command; chroot is "n" everywhere so the
# instance needs no copies of /etc files inside its queue directory.
MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60    1 pickup
cleanup   unix  n - n -     0 cleanup
qmgr      unix  n - n 300   1 qmgr
rewrite   unix  - - n -     - trivial-rewrite
bounce    unix  - - n -     0 bounce
defer     unix  - - n -     0 bounce
trace     unix  - - n -     0 bounce
verify    unix  - - n -     1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -     - proxymap
proxywrite unix - - n -     1 proxymap
smtp      unix  - - n -     - smtp
relay     unix  - - n -     - smtp
showq     unix  n - n -     - showq
error     unix  - - n -     - error
retry     unix  - - n -     - error
discard   unix  - - n -     - discard
local     unix  - n n -     - local
virtual   unix  - n n -     - virtual
lmtp      unix  - - n -     - lmtp
anvil     unix  - - n -     1 anvil
scache    unix  - - n -     1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
maillog_file = {base}/maillog
maillog_file_prefixes = {base}
myhostname = postfix-bench.localdomain
mydomain = localdomain
myorigin = $myhostname
mydestination =
relay_domains =
relayhost =
alias_maps =
alias_database =
inet_interfaces = {host}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
biff = no
append_dot_mydomain = no
readme_directory = no
smtpd_banner = $myhostname ESMTP
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {base}/mail
virtual_mailbox_maps = static:bench/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
"""


def postfix_available() -> bool:
    """True when a Postfix installation is present on this machine."""
    return os.access(POSTFIX, os.X_OK)


def find_smtp_source() -> str | None:
    """Path of Postfix's smtp-source test client, or None when it is not installed."""
    for path in SMTP_SOURCE_PATHS:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("smtp-source")


class PostfixInstance(ThrowawayInstance):
    """One throwaway Postfix instance; use as a context manager so it is always stopped."""

    kind = "postfix"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """See :class:`ThrowawayInstance`; refused where Postfix is not installed."""
        if not postfix_available():
            raise RuntimeError(f"{POSTFIX} is not installed")
        super().__init__(*args, **kwargs)
        self.config_dir = self.base / "etc"
        self.queue_dir = self.base / "spool"
        self.data_dir = self.base / "data"
        self.maildir = self.base / "mail" / "bench"
        self.log = self.base / "maillog"
        self.started = False

    def _postfix(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [POSTFIX, "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def write_config(self) -> None:
        """Write main.cf and master.cf and create the directories Postfix does not create."""
        self.base.chmod(0o755)  # the postfix and nobody users must traverse it
        nobody = pwd.getpwuid(MAILBOX_UID)
        for path in (self.config_dir, self.queue_dir, self.data_dir):
            path.mkdir(mode=0o755)
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        owned = [self.base / "mail", self.maildir]
        owned += [self.maildir / sub for sub in ("cur", "new", "tmp")]
        for path in owned:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        postfix_user = pwd.getpwnam("postfix")
        os.chown(self.data_dir, postfix_user.pw_uid, postfix_user.pw_gid)
        main_cf = MAIN_CF.format(
            spool=self.queue_dir,
            data=self.data_dir,
            base=self.base,
            host=self.host,
            domain=self.domain,
            uid=nobody.pw_uid,
            gid=nobody.pw_gid,
        )
        (self.config_dir / "main.cf").write_text(main_cf)
        listen = f"{self.host}:{self.port}"
        (self.config_dir / "master.cf").write_text(MASTER_CF.format(listen=listen))

    def start(self, timeout: float = 30) -> None:
        """Write the configuration, start the instance and wait for its SMTP greeting."""
        self.write_config()
        result = self._postfix("start", timeout=timeout)
        self.started = True
        if result.returncode != 0:
            raise RuntimeError(
                f"postfix start failed (rc {result.returncode}): {result.stderr.strip()}"
                f"\n{self.log_tail()}"
            )
        try:
            wait_for_smtp(self.host, self.port, timeout=timeout)
        except TimeoutError as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from exc

    def session_leader(self) -> int | None:
        """The master process (it calls setsid; every daemon is its child)."""
        return self.master_pid()

    def master_pid(self) -> int | None:
        """The pid of the running master process, or None."""
        try:
            pid = int((self.queue_dir / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def stop(self, timeout: float = 30) -> None:
        """Stop the instance (stop, then abort, then SIGKILL to the master) and clean up."""
        if self.started:
            pid = self.master_pid()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._postfix("stop", timeout=timeout)
            if not self._wait_gone(pid, timeout):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._postfix("abort", timeout=timeout)
                if not self._wait_gone(pid, 5) and pid is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            self.started = False
        self.remove_unless_kept()

    @staticmethod
    def _wait_gone(pid: int | None, timeout: float) -> bool:
        if pid is None:
            return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.1)
        return False


def main(argv: list[str] | None = None) -> int:
    """Start an instance, print where it is, and stop it on Ctrl-C or SIGTERM."""
    parser = arguments("Run a throwaway Postfix instance on loopback.")
    args = parser.parse_args(argv)
    return serve(
        "postfix",
        lambda: PostfixInstance(port=args.port, domain=args.domain, keep=args.keep),
        lambda: "postfix",
    )


if __name__ == "__main__":
    sys.exit(main())
