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

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from instance import STOP_TIMEOUT, ProcessGroup, ThrowawayInstance, arguments, serve
from netutil import wait_for_smtp

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


class HarakaInstance(ThrowawayInstance):
    """One throwaway Haraka instance; use as a context manager so it is always stopped."""

    kind = "haraka"

    def __init__(self, *args: Any, log_level: str = "notice", **kwargs: Any) -> None:
        """See :class:`ThrowawayInstance`; ``log_level`` is Haraka's."""
        if log_level not in LOG_LEVELS:
            raise ValueError(f"log level {log_level!r}: choose from {', '.join(LOG_LEVELS)}")
        super().__init__(*args, **kwargs)
        self.log_level = log_level
        self.config_dir = self.base / "config"
        self.group: ProcessGroup | None = None

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
        """Install Haraka if needed (saying so through ``say``, by default on stderr), write the
        configuration, start it and wait for its 220."""
        package = install(say=say or (lambda text: print(text, file=sys.stderr, flush=True)))
        self.write_config(package)
        argv = ["node", str(package / "bin" / "haraka"), "-c", str(self.base)]
        self.group = ProcessGroup(argv, self.base, self.log)
        try:
            wait_for_smtp(self.host, self.port, timeout, alive=self.alive)
        except (TimeoutError, RuntimeError) as exc:
            raise RuntimeError(f"{exc}\n{self.log_tail()}") from exc

    def session_leader(self) -> int | None:
        """The Haraka process (also its session and process group) while it runs."""
        group = self.group
        return group.proc.pid if group is not None and group.alive() else None

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop Haraka's process group (SIGTERM, then SIGKILL) and remove the directory."""
        if self.group is not None:
            self.group.stop(timeout)
            self.group = None
        self.remove_unless_kept()


def main(argv: list[str] | None = None) -> int:
    """Start an instance, print where it is, and stop it on Ctrl-C or SIGTERM."""
    parser = arguments("Run a throwaway Haraka instance on loopback.")
    parser.add_argument("--log-level", default="notice", choices=LOG_LEVELS)
    args = parser.parse_args(argv)
    return serve(
        "haraka",
        lambda: HarakaInstance(
            port=args.port, domain=args.domain, keep=args.keep, log_level=args.log_level
        ),
        haraka_version,
    )


if __name__ == "__main__":
    sys.exit(main())
