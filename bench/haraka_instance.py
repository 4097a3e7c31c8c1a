"""A throwaway Haraka instance on a loopback port, storing one domain's mail in one Maildir.

Haraka (a Node.js SMTP server) comes from the npm registry, pinned to ``HARAKA_VERSION``, and
is installed once into a cache directory (``$XDG_CACHE_HOME/mailmax-bench/haraka``, by default
``~/.cache/mailmax-bench/haraka``) that later runs reuse. Each start gets a new directory with its
own Haraka configuration: one process (``nodes=0``, no cluster) listening on ``127.0.0.1:PORT``,
no TLS, no DNS (the client's reverse lookup is answered by ``bench/haraka/bench_no_rdns.js``),
recipients accepted for the domain only (``rcpt_to.in_host_list``), and the queue plugin
``bench/haraka/bench_maildir.js``, which writes each message to ``tmp/``, fsyncs it, renames it
into ``new/`` and fsyncs ``new/`` before the 250 reply. Haraka runs in its own session and
process group and is always stopped (SIGTERM to the group, then SIGKILL).

Usage (runs until Ctrl-C, then stops and removes the instance)::

    python bench/haraka_instance.py [--port P] [--keep] [--log-level info]
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netutil import LOOPBACK, free_port, require_loopback, wait_for_smtp

HARAKA_VERSION = "3.3.4"
NODE_MAJOR_MIN = 20
PLUGIN_DIR = Path(__file__).resolve().parent / "haraka"
PLUGINS = ("bench_no_rdns", "rcpt_to.in_host_list", "bench_maildir")
INSTALL_TIMEOUT = 600.0
LOG_LEVELS = ("data", "protocol", "debug", "info", "notice", "warn", "error")

SMTP_INI = """\
[main]
listen={host}:{port}
; one process, no cluster: compared with the other single-process servers on equal terms
nodes=0
inactivity_timeout=300
"""

LOG_INI = """\
[main]
level={level}
timestamps=true
format=default
"""


class HarakaUnavailable(RuntimeError):
    """Haraka cannot run here (no suitable Node.js or npm, or the install failed)."""


def cache_dir() -> Path:
    """Where Haraka is installed once and reused by later runs."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mailmax-bench" / "haraka"


def node_problem() -> str | None:
    """None when Node.js (>= 20) and npm are on PATH, else what is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return (
            "Haraka needs Node.js >= 20 and npm on PATH"
            " (Debian: apt-get install -y nodejs npm, or Node.js from nodejs.org)"
        )
    try:
        version = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
        major = int(version.lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return f"could not read the version of {node}"
    if major < NODE_MAJOR_MIN:
        return f"Haraka {HARAKA_VERSION} needs Node.js >= {NODE_MAJOR_MIN}; {node} is {version}"
    return None


def installed_package(cache: Path | None = None) -> Path | None:
    """The installed Haraka package directory, or None when it is not (completely) installed."""
    cache = cache or cache_dir()
    package = cache / "node_modules" / "Haraka"
    complete = (cache / f"installed-{HARAKA_VERSION}").exists()
    return package if complete and (package / "bin" / "haraka").exists() else None


def install(cache: Path | None = None, say=None) -> Path:
    """Install Haraka ``HARAKA_VERSION`` into ``cache`` unless it is there; its package dir.

    Concurrent callers wait for one another (a lock file); a failed install raises
    :class:`HarakaUnavailable` saying what to do.
    """
    cache = cache or cache_dir()
    problem = node_problem()
    if problem:
        raise HarakaUnavailable(problem)
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        package = installed_package(cache)
        if package is not None:
            return package
        if say:
            say(f"installing Haraka {HARAKA_VERSION} from the npm registry into {cache} ...")
        manifest = {
            "name": "mailmax-bench-haraka",
            "private": True,
            "description": "Haraka for the MailMax SMTP benchmark (bench/haraka_instance.py)",
            "dependencies": {"Haraka": HARAKA_VERSION},
        }
        (cache / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
        argv = ["npm", "install", "--omit=optional", "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            done = subprocess.run(
                argv,
                cwd=cache,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
            failure = None if done.returncode == 0 else f"rc {done.returncode}"
            output = (done.stderr or "") + (done.stdout or "")
        except subprocess.TimeoutExpired:
            failure, output = f"no result within {INSTALL_TIMEOUT:.0f} s", ""
        if failure is None and not (cache / "node_modules" / "Haraka" / "bin" / "haraka").exists():
            failure = "it finished but node_modules/Haraka/bin/haraka is missing"
        if failure is not None:
            raise HarakaUnavailable(
                f"`npm install` of Haraka {HARAKA_VERSION} in {cache} failed ({failure}).\n"
                f"{_npm_error_summary(output)}\n"
                "Check that npm reaches its registry (`npm ping`; a proxy or mirror is set"
                " with `npm config set proxy ...` / `npm config set registry ...`), then run"
                f" the benchmark again; `rm -rf {cache}` starts the install afresh. Without"
                " Haraka, leave it out of --servers."
            )
        (cache / f"installed-{HARAKA_VERSION}").write_text(time.strftime("%Y-%m-%d %H:%M:%S\n"))
        return cache / "node_modules" / "Haraka"


def _npm_error_summary(output: str) -> str:
    """The first lines of npm's error (no stack frames) and where its full log is."""
    lines = [
        line
        for line in output.strip().splitlines()
        if not line.removeprefix("npm error").strip().startswith("at ")
    ]
    first = lines[:4]
    first += [line for line in lines[4:] if "complete log" in line]
    return "\n".join(first) or "(npm printed nothing)"


def haraka_version(package: Path | None = None) -> str:
    """E.g. ``Haraka 3.3.4 (Node.js v20.20.2)``, from the installed package and ``node``."""
    package = package or installed_package()
    version = HARAKA_VERSION
    if package is not None:
        with contextlib.suppress(OSError, ValueError, KeyError):
            version = json.loads((package / "package.json").read_text())["version"]
    node = "?"
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        node = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    return f"Haraka {version} (Node.js {node})"


class HarakaInstance:
    """One throwaway Haraka instance; use as a context manager so it is always stopped."""

    def __init__(
        self,
        port: int | None = None,
        domain: str = "example.test",
        host: str = LOOPBACK,
        keep: bool = False,
        parent: Path | None = None,
        log_level: str = "notice",
    ) -> None:
        """Prepare (but do not start) an instance listening on ``host:port``, with its files
        in a new directory under ``parent`` (default: the temporary directory)."""
        if log_level not in LOG_LEVELS:
            raise ValueError(f"log level {log_level!r}: choose from {', '.join(LOG_LEVELS)}")
        self.host = require_loopback(host)
        self.port = port or free_port(host)
        self.domain = domain
        self.keep = keep
        self.log_level = log_level
        self.base = Path(tempfile.mkdtemp(prefix="mailmax-bench-haraka-", dir=parent))
        self.config_dir = self.base / "config"
        self.maildir = self.base / "Maildir"
        self.log = self.base / "haraka.log"
        self.proc: subprocess.Popen | None = None

    def write_config(self, package: Path) -> None:
        """Copy Haraka's default configuration (as ``haraka -i`` does), write the benchmark's
        settings over it and copy the benchmark's plugins next to it."""
        shutil.copytree(package / "config", self.config_dir)
        plugins = self.base / "plugins"
        plugins.mkdir()
        for name in ("bench_maildir", "bench_no_rdns"):
            shutil.copyfile(PLUGIN_DIR / f"{name}.js", plugins / f"{name}.js")
        for sub in ("cur", "new", "tmp"):
            (self.maildir / sub).mkdir(parents=True, exist_ok=True)
        files = {
            "smtp.ini": SMTP_INI.format(host=self.host, port=self.port),
            "log.ini": LOG_INI.format(level=self.log_level),
            "plugins": "\n".join(PLUGINS) + "\n",
            "host_list": f"{self.domain}\n",
            "me": "haraka-bench.localdomain\n",
            "bench_maildir.ini": f"[main]\nmaildir={self.maildir}\n",
        }
        for name, text in files.items():
            (self.config_dir / name).write_text(text)

    def start(self, timeout: float = 30, say=None) -> None:
        """Install Haraka if needed, write the configuration, start it and wait for its 220."""
        package = install(say=say)
        self.write_config(package)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["node", str(package / "bin" / "haraka"), "-c", str(self.base)],
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            wait_for_smtp(self.host, self.port, timeout, alive=self.alive)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from exc

    @property
    def pid(self) -> int | None:
        """The pid of the Haraka process (also its session and process group) while it runs."""
        return self.proc.pid if self.alive() else None

    def alive(self) -> bool:
        """True while the Haraka process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> None:
        """Stop Haraka's process group (SIGTERM, then SIGKILL) and remove the directory."""
        if self.proc is not None:
            if self.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(5)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers left in the group
            self.proc = None
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)

    def delivered(self) -> int:
        """Messages in the Maildir (new/ and cur/)."""
        return sum(1 for sub in ("new", "cur") for _ in os.scandir(self.maildir / sub))

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of Haraka's output (for error messages)."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> HarakaInstance:
        """Start the instance; it is stopped on exit, also on error."""
        try:
            self.start(say=lambda text: print(text, file=sys.stderr, flush=True))
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the instance."""
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Start an instance, print where it is, and stop it on Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(description="Run a throwaway Haraka instance on loopback.")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--domain", default="example.test")
    parser.add_argument("--keep", action="store_true", help="keep the directory after stopping")
    parser.add_argument("--log-level", default="notice", choices=LOG_LEVELS)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        instance = HarakaInstance(
            port=args.port, domain=args.domain, keep=args.keep, log_level=args.log_level
        )
        with instance:
            print(f"{haraka_version()} listening on {instance.host}:{instance.port}", flush=True)
            print(f"directory {instance.base}; Maildir {instance.maildir}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    except (HarakaUnavailable, RuntimeError) as exc:
        print(f"haraka: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
