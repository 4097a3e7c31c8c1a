"""The SMTP servers under test, each started fresh on a free loopback port and always stopped.

* ``mailmax``: ``mailmax init`` into a temporary data directory, a ``bench@example.test`` user,
  then ``twistd -n --pidfile= mailmax --config DIR/mailmax.toml`` in its own process group.
* ``floor``: ``bench/baseline_twisted.py`` (twisted.mail ESMTP, Maildir, fsync inline).
* ``postfix``: a throwaway instance from ``bench/postfix_instance.py``.
* ``haraka``: a throwaway Haraka instance from ``bench/haraka_instance.py`` (installed from the
  npm registry into a cache directory on first use).

Every server exposes the same small interface: ``start()``, ``stop()``, ``alive()``,
``harvest()`` (count the messages delivered to its Maildirs so far) and ``version()``.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from haraka_instance import HarakaInstance, HarakaUnavailable, haraka_version, install
from instance import STOP_TIMEOUT, ProcessGroup, ThrowawayInstance
from netutil import LOOPBACK, free_port, require_loopback, wait_for_smtp
from postfix_instance import PostfixInstance, postfix_available

BENCH_DIR = Path(__file__).resolve().parent
DOMAIN = "example.test"
BENCH_USER = f"bench@{DOMAIN}"
START_TIMEOUT = 30.0
MAILDIR_SEARCH_DEPTH = 6


def tool(name: str) -> str | None:
    """Path of a console script installed next to this Python, else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    return shutil.which(name)


#: A new directory is tried again (another block group) while creating a file there costs more
#: than this many ms, at most this many times.
CLEAN_CREATE_MS, FRESH_DIR_ATTEMPTS = 0.1, 8
#: ioctls and the flag that make ext4 place a directory's subdirectories like top-level ones.
_FS_IOC_GETFLAGS, _FS_IOC_SETFLAGS, _FS_TOPDIR_FL = 0x80086601, 0x40086602, 0x00020000


def spread_subdirectories(path: Path) -> bool:
    """Ask the file system to give each new subdirectory of ``path`` a block group of its own
    (ext4's "top of directory hierarchy" flag); False where that is not supported.

    On ext4 without a journal, creating a file scans past every inode of its group deleted in
    the last one to six minutes: one server's deleted files (Postfix's queue, an earlier run)
    would slow down the next server's deliveries if they shared a group.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        flags = array.array("l", [0])
        fcntl.ioctl(fd, _FS_IOC_GETFLAGS, flags, True)
        flags[0] |= _FS_TOPDIR_FL
        fcntl.ioctl(fd, _FS_IOC_SETFLAGS, flags, True)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def create_cost_ms(directory: Path, files: int = 200) -> float:
    """Milliseconds one new empty file costs in ``directory`` now (the files stay)."""
    probe = directory / "create-probe"
    probe.mkdir()
    start = time.perf_counter()
    for number in range(files):
        os.close(os.open(probe / str(number), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    return (time.perf_counter() - start) * 1000 / files


def count_maildir(maildir: Path) -> int:
    """The message files in ``maildir``'s ``new/`` and ``cur/``.

    They are left where they are until the whole benchmark ends: on ext4 without a journal,
    creating a file scans past every inode of its group deleted in the last one to six
    minutes, so deleting messages between runs would slow down the next server's deliveries.
    """
    count = 0
    for sub in ("new", "cur"):
        try:
            with os.scandir(maildir / sub) as entries:
                count += sum(1 for entry in entries if entry.is_file(follow_symlinks=False))
        except FileNotFoundError:
            continue
    return count


def find_maildirs(root: Path, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """Directories under ``root`` holding ``cur``, ``new`` and ``tmp`` (depth-bounded walk)."""
    found: list[Path] = []
    base_depth = len(root.parts)
    for dirpath, dirnames, _files in os.walk(root):
        path = Path(dirpath)
        if any(path == ex or ex in path.parents for ex in exclude):
            dirnames[:] = []
            continue
        if {"cur", "new", "tmp"} <= set(dirnames):
            found.append(path)
        deeper = len(path.parts) - base_depth < MAILDIR_SEARCH_DEPTH
        dirnames[:] = [d for d in dirnames if deeper and d not in ("cur", "new", "tmp")]
    return found


_TICK = os.sysconf("SC_CLK_TCK")


def session_cpu_seconds(sid: int) -> float | None:
    """CPU time (user + system) of every live process in session ``sid``, plus the reaped
    children of the session leader; None when the leader is gone."""
    total = 0.0
    leader_seen = False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended meanwhile
        if int(fields[3]) != sid:
            continue
        total += int(fields[11]) + int(fields[12])
        if int(entry.name) == sid:
            leader_seen = True
            total += int(fields[13]) + int(fields[14])
    return total / _TICK if leader_seen else None


class Server:
    """Common shape of a server under test."""

    name = "server"
    label = "server"

    def __init__(self, workdir: Path, host: str = LOOPBACK) -> None:
        """Prepare a server that will keep its files under ``workdir``."""
        self.workdir = workdir
        self.host = require_loopback(host)
        self.port = 0
        self.recipient = BENCH_USER
        self.delivered_total = 0
        self.starts = 0
        #: What creating a file cost in the directory of the latest start (ms).
        self.create_ms: float | None = None
        #: Directories of earlier starts kept outside the work directory, removed by cleanup().
        self.bases: list[Path] = []

    def available(self) -> str | None:
        """None when the server can run here, else the reason it cannot."""
        return None

    def start(self) -> None:
        """Start the server and wait for its greeting."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        raise NotImplementedError

    def alive(self) -> bool:
        """True while the server runs."""
        raise NotImplementedError

    def maildirs(self) -> list[Path]:
        """The Maildirs the benchmark's messages are delivered to."""
        raise NotImplementedError

    def version(self) -> str:
        """A short description of the software under test."""
        return self.label

    def session_id(self) -> int | None:
        """The session holding all the server's processes (None when not running)."""
        group = getattr(self, "group", None)
        return group.proc.pid if group is not None and group.alive() else None

    def cpu_seconds(self) -> float | None:
        """CPU seconds used so far by the server's processes (None when unknown)."""
        sid = self.session_id()
        return session_cpu_seconds(sid) if sid is not None else None

    def harvest(self) -> int:
        """The messages this instance has delivered so far (counted, not removed)."""
        self.delivered_total = sum(count_maildir(maildir) for maildir in self.maildirs())
        return self.delivered_total

    def fresh_dir(self) -> Path:
        """A new directory under the work directory for this start (the files of earlier
        starts stay until the end: see :func:`count_maildir`); :attr:`create_ms` says what
        creating a file costs there."""
        self.starts += 1
        best: tuple[float, Path] | None = None
        for attempt in range(1, FRESH_DIR_ATTEMPTS + 1):  # each lands in a random group
            path = self.workdir / f"{self.name}-{self.starts}-{attempt}"
            path.mkdir(parents=True)
            path.chmod(0o755)
            cost = create_cost_ms(path)
            if best is None or cost < best[0]:
                best = (cost, path)
            if cost <= CLEAN_CREATE_MS:
                break
        assert best is not None
        self.create_ms, path = best
        return path

    def cleanup(self) -> None:
        """Remove what this server left outside the work directory (after the last stop)."""


class TwistedFloor(Server):
    """bench/baseline_twisted.py in a subprocess."""

    name = "floor"
    label = "Twisted floor"

    def start(self) -> None:
        """Start the floor server on a free port with a fresh Maildir."""
        self.delivered_total = 0
        self.dir = self.fresh_dir()
        self.port = free_port(self.host)
        argv = [
            sys.executable,
            str(BENCH_DIR / "baseline_twisted.py"),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--maildir",
            str(self.dir / "Maildir"),
        ]
        self.group = ProcessGroup(argv, self.dir, self.dir / "server.log")
        try:
            wait_for_smtp(self.host, self.port, START_TIMEOUT, alive=self.group.alive)
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{self.group.tail()}") from exc

    def stop(self) -> None:
        """Stop the subprocess group."""
        if getattr(self, "group", None) is not None:
            self.group.stop()
            self.group = None

    def alive(self) -> bool:
        """True while the subprocess runs."""
        return getattr(self, "group", None) is not None and self.group.alive()

    def maildirs(self) -> list[Path]:
        """The one Maildir the floor writes to."""
        return [self.dir / "Maildir"]

    def version(self) -> str:
        """twisted.mail.smtp.ESMTP and the Twisted version."""
        import twisted

        return f"twisted.mail ESMTP (Twisted {twisted.__version__}), Maildir, fsync inline"


class ThrowawayServer(Server):
    """A server under test run as a :class:`ThrowawayInstance` (a new one per start)."""

    instance_class: type[ThrowawayInstance]

    def start(self) -> None:
        """Start a fresh instance on a free port."""
        self.delivered_total = 0
        self.instance = self.instance_class(
            host=self.host, domain=DOMAIN, keep=True, parent=self.fresh_dir()
        )
        self.bases.append(self.instance.base)
        self.port = self.instance.port
        try:
            self.instance.start(timeout=START_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the instance (its directory stays until :meth:`cleanup`)."""
        if getattr(self, "instance", None) is not None:
            self.instance.stop(timeout=STOP_TIMEOUT)
            self.instance = None

    def cleanup(self) -> None:
        """Remove the directories of every instance (kept until now: see count_maildir)."""
        for base in self.bases:
            shutil.rmtree(base, ignore_errors=True)
        self.bases = []

    def alive(self) -> bool:
        """True while the instance runs."""
        instance = getattr(self, "instance", None)
        return instance is not None and instance.alive()

    def session_id(self) -> int | None:
        """The session holding every process of the instance."""
        instance = getattr(self, "instance", None)
        return instance.session_leader() if instance is not None else None

    def maildirs(self) -> list[Path]:
        """The Maildir every recipient of the domain goes to."""
        return [self.instance.maildir]


class Postfix(ThrowawayServer):
    """A throwaway Postfix instance."""

    name = "postfix"
    label = "Postfix"
    instance_class = PostfixInstance

    def available(self) -> str | None:
        """Postfix runs only where it is installed."""
        return None if postfix_available() else "/usr/sbin/postfix is not installed"

    def version(self) -> str:
        """Postfix's mail_version."""
        try:
            out = subprocess.run(
                ["postconf", "-d", "-h", "mail_version"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            out = "?"
        return f"Postfix {out} (queue, then virtual(8) to Maildir)"


class Haraka(ThrowawayServer):
    """A throwaway Haraka instance: one Node.js process, Maildir written by a durable plugin."""

    name = "haraka"
    label = "Haraka"
    instance_class = HarakaInstance

    def available(self) -> str | None:
        """Haraka runs where Node.js and npm are and the (cached) npm install succeeds."""
        try:
            install(say=lambda text: print(text, file=sys.stderr, flush=True))
        except HarakaUnavailable as exc:
            return str(exc)
        return None

    def version(self) -> str:
        """Haraka's and Node.js's versions, and how it stores messages."""
        return f"{haraka_version()}, one process, Maildir, fsync in the plugin"


class MailMax(Server):
    """MailMax under twistd, initialised with ``mailmax init`` in a temporary data directory."""

    name = "mailmax"
    label = "MailMax"

    def available(self) -> str | None:
        """MailMax runs when its CLI has ``init`` and the twistd plugin loads."""
        mailmax, twistd = tool("mailmax"), tool("twistd")
        if not mailmax or not twistd:
            return "the mailmax or twistd command is not installed"
        probe = self._run([mailmax, "init", "--help"], check=False)
        if probe.returncode != 0:
            return f"`mailmax init --help` failed (rc {probe.returncode}): {_last(probe)}"
        probe = self._run([twistd, "mailmax", "--help"], check=False)
        if probe.returncode != 0:
            return f"`twistd mailmax --help` failed (rc {probe.returncode}): {_last(probe)}"
        return None

    @staticmethod
    def _run(argv: list[str], check: bool = True, cwd: Path | None = None):
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=cwd,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed (rc {result.returncode}):\n{_last(result, 15)}"
            )
        return result

    def start(self) -> None:
        """init, add the bench user, start twistd and wait for the SMTP greeting."""
        self.delivered_total = 0
        self.dir = self.fresh_dir()
        self.data_dir = self.dir / "data"
        self.config = self.data_dir / "mailmax.toml"
        mailmax, twistd = tool("mailmax"), tool("twistd")
        # every port free at run time, the admin API's too: several servers may run at once
        services = ("smtp", "submission", "smtps", "pop3", "pop3s", "imap", "imaps", "admin")
        ports = [free_port(self.host) for _ in services]
        while len(set(ports)) < len(services):
            ports = [free_port(self.host) for _ in services]
        self.port = ports[0]
        init = [mailmax, "init", "--data-dir", str(self.data_dir), "--domain", DOMAIN]
        options = self._run([mailmax, "init", "--help"], check=False).stdout
        for service, port in zip(services, ports, strict=True):
            if f"--{service}-port" in options:
                init += [f"--{service}-port", str(port)]
        if "--non-interactive" in options:
            init.append("--non-interactive")
        if "--address" in options:
            init += ["--address", self.host]
        self._run(init, cwd=self.dir)
        self._check_loopback_only()
        added = self._run(
            [mailmax, "--config", str(self.config), "user", "add", BENCH_USER, "--no-password"],
            check=False,
            cwd=self.dir,
        )
        self.recipient = BENCH_USER if added.returncode == 0 else f"postmaster@{DOMAIN}"
        self.user_note = "" if added.returncode == 0 else f"user add failed: {_last(added)}"
        argv = [twistd, "-n", "--pidfile=", "mailmax", "--config", str(self.config)]
        self.group = ProcessGroup(argv, self.data_dir, self.dir / "twistd.out")
        try:
            wait_for_smtp(self.host, self.port, START_TIMEOUT, alive=self.group.alive)
        except (TimeoutError, RuntimeError) as exc:
            tail = self.group.tail()
            self.stop()
            raise RuntimeError(f"{exc}\n{tail}") from exc

    def _check_loopback_only(self) -> None:
        """Refuse to start a configuration that listens anywhere but loopback."""
        from mailmax.core.config import load

        settings = load(self.config)
        for listener in settings.listeners:
            try:
                require_loopback(listener.address)
            except ValueError as exc:
                raise RuntimeError(f"mailmax init wrote a non-loopback listener: {exc}") from None
        self.spool_dir = settings.spool_dir

    def stop(self) -> None:
        """Stop twistd's process group."""
        if getattr(self, "group", None) is not None:
            self.group.stop()
            self.group = None

    def alive(self) -> bool:
        """True while twistd runs."""
        return getattr(self, "group", None) is not None and self.group.alive()

    def maildirs(self) -> list[Path]:
        """Every Maildir under the data directory (outside the spool)."""
        exclude = (self.spool_dir,) if getattr(self, "spool_dir", None) else ()
        return find_maildirs(self.data_dir, exclude)

    def version(self) -> str:
        """MailMax's version and the git commit of the working tree."""
        try:
            from mailmax import __version__
        except ImportError:
            __version__ = "?"
        commit = ""
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            commit = subprocess.run(
                ["git", "-C", str(BENCH_DIR), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
        return f"MailMax {__version__} ({commit or 'no git'})"


def _last(result: subprocess.CompletedProcess[str], lines: int = 3) -> str:
    text = (result.stderr or "") + (result.stdout or "")
    return " | ".join(text.strip().splitlines()[-lines:]) or "(no output)"


SERVERS = {cls.name: cls for cls in (MailMax, TwistedFloor, Postfix, Haraka)}


def wait_delivered(server: Server, expected: int, timeout: float) -> int:
    """Harvest until ``expected`` messages arrived or ``timeout`` passed; return the total."""
    deadline = time.monotonic() + timeout
    total = server.harvest()
    while total < expected and time.monotonic() < deadline:
        time.sleep(0.1)
        total = server.harvest()
    return total
