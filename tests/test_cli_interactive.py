"""The prompts of the installed ``mailmax`` on a real terminal (a pty): S8, A4, A6."""

from __future__ import annotations

import os
import pty
import select
import time
from pathlib import Path

from mailmax.core.config import load
from tests.test_cli_support import DOMAIN, make_system


class Terminal:
    """``mailmax ARGS`` running on a pseudo-terminal, answered prompt by prompt."""

    def __init__(self, *args: str, cwd: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "MAILMAX_CONFIG"}
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal
            os.chdir(cwd)
            os.execvpe("mailmax", ["mailmax", *args], env)
        self.shown = ""  # everything the terminal showed
        self.unread = ""  # what no expect() has consumed yet

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.fd, 4096).decode(errors="replace")
        except OSError:  # the child has closed the terminal
            chunk = ""
        self.shown += chunk
        self.unread += chunk
        return bool(chunk)

    def expect(self, text: str, timeout: float = 30) -> None:
        """Read until ``text`` has appeared in what was not consumed yet."""
        deadline = time.monotonic() + timeout
        while text not in self.unread:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} not seen; terminal:\n{self.shown}"
            assert self._read(left), f"{text!r} not seen before exit; terminal:\n{self.shown}"
        self.unread = self.unread.partition(text)[2]

    def answer(self, prompt: str, reply: str) -> None:
        """Wait for ``prompt``, then type ``reply`` and Enter."""
        self.expect(prompt)
        os.write(self.fd, reply.encode() + b"\r")

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        """Read to the end; return the exit status and everything the terminal showed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._read(0.2):
            pass
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status), self.shown


def test_init_asks_for_what_is_missing_and_hides_passwords(tmp_path):
    """S8: on a terminal init asks for the domain, host name and passwords; typed passwords
    are not echoed, mistakes are asked again, empty answers generate a password."""
    term = Terminal("init", "--data-dir", str(tmp_path / "data"), cwd=tmp_path)
    term.answer("Domain [example.com]: ", "not a domain!")
    term.answer("Domain [example.com]: ", "shop.test")
    term.answer("Host name of this server [mail.shop.test]: ", "")
    term.answer("Password for postmaster@shop.test (empty: generate one): ", "typed secret 1")
    term.answer("Repeat it: ", "typed secret 2")
    term.expect("the two passwords differ")
    term.answer("Password for postmaster@shop.test (empty: generate one): ", "typed secret 1")
    term.answer("Repeat it: ", "typed secret 1")
    term.answer("Password for admin@shop.test (empty: generate one): ", "")
    term.answer("Password for root@shop.test (empty: generate one): ", "")
    code, shown = term.finish()
    assert code == 0, shown
    assert "typed secret" not in shown
    assert "Generated passwords" in shown
    generated = shown.split("Generated passwords", 1)[1].split("Next steps", 1)[0]
    assert "admin@shop.test" in generated and "root@shop.test" in generated
    assert "postmaster@shop.test" not in generated
    assert load(tmp_path / "data" / "mailmax.toml").server.hostname == "mail.shop.test"


def test_passwd_asks_twice_and_delete_asks_for_confirmation(tmp_path):
    """A6: passwd prompts twice without echo; A4: delete asks, and "no" changes nothing."""
    system = make_system(tmp_path)
    config = str(system.config)
    term = Terminal("--config", config, "user", "passwd", f"admin@{DOMAIN}", cwd=tmp_path)
    term.answer(f"Password for admin@{DOMAIN}: ", "")
    term.expect("the password is empty")
    term.answer(f"Password for admin@{DOMAIN}: ", "brand new secret")
    term.answer("Repeat it: ", "brand new secret")
    code, shown = term.finish()
    assert code == 0, shown
    assert "brand new secret" not in shown
    directory = system.directory()
    try:
        assert directory.authenticate(f"admin@{DOMAIN}", "brand new secret") is not None
    finally:
        directory.close()

    term = Terminal(
        "--config", config, "domain", "delete", DOMAIN, "--mode", "remove", cwd=tmp_path
    )
    term.answer("[y/N]: ", "n")
    code, shown = term.finish()
    assert code == 1 and "cancelled; nothing was changed" in shown
    assert system.mail_dir().is_dir()

    term = Terminal(
        "--config", config, "domain", "delete", DOMAIN, "--mode", "remove", cwd=tmp_path
    )
    term.answer("[y/N]: ", "y")
    code, shown = term.finish()
    assert code == 0, shown
    assert not system.mail_dir().exists()
