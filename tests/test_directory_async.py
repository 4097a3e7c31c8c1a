"""AsyncDirectory: non-blocking calls, the look-up cache and its 2-second bound (S5, A5, A6).

The Twisted reactor runs in a subprocess (``task.react``) against the real database of each
backend; the subprocess reports what it saw as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from twisted.internet.task import Clock

from mailmax.core.directory import AsyncDirectory, DirectoryError, SQLDirectory

SCENARIO = textwrap.dedent(
    """
    import json, sys, threading, time
    from argon2 import PasswordHasher
    from twisted.internet import defer, task
    from mailmax.core.directory import AsyncDirectory, SQLDirectory

    FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    URL, CACHE = sys.argv[1], float(sys.argv[2])

    class Counting(SQLDirectory):
        '''The real directory, noting which thread ran each look-up.'''
        calls, threads = 0, set()

        def lookup_recipient(self, address):
            type(self).calls += 1
            type(self).threads.add(threading.current_thread().name)
            time.sleep(0.05)  # a slow database: concurrent misses must share this query
            return super().lookup_recipient(address)

        def authenticate(self, login, password, default_domain=""):
            type(self).auth_calls += 1
            return super().authenticate(login, password, default_domain)

        def record_logins(self, records):
            type(self).login_writes += 1
            return super().record_logins(records)

    Counting.login_writes = Counting.auth_calls = 0

    admin = SQLDirectory.open(URL, password_hasher=FAST)  # another client, like the CLI
    admin.add_domain("example.com", "/srv/mail/example.com")
    admin.add_user("bob@example.com", "bobpw", keep_clear=True)
    admin.add_user("slow@example.com")
    admin.set_password("slow@example.com", None)
    directory = Counting.open(URL, password_hasher=FAST)

    async def main(reactor):
        out = {}
        cached = AsyncDirectory(directory, cache_seconds=CACHE, reactor=reactor)
        cached.start()
        first = await defer.gatherResults(
            [cached.lookup_recipient("bob@example.com") for _ in range(5)]
        )
        out["first"] = [r.status.value for r in first]
        out["calls_after_burst"] = Counting.calls
        out["threads"] = sorted(Counting.threads)
        out["reactor_thread"] = threading.current_thread().name

        admin.edit_user("bob@example.com", account_type="disabled")
        changed_at = reactor.seconds()
        out["right_after_change"] = (await cached.lookup_recipient("bob@example.com")).status.value
        while (await cached.lookup_recipient("bob@example.com")).status.value != "disabled":
            await task.deferLater(reactor, 0.02, lambda: None)
            if reactor.seconds() - changed_at > 5:
                break
        out["visible_after"] = reactor.seconds() - changed_at
        admin.edit_user("bob@example.com", account_type="normal")
        cached.invalidate()  # what a writer in this process does after a change
        out["after_invalidate"] = (await cached.lookup_recipient("bob@example.com")).status.value
        try:
            await cached.run(admin.add_user, "no/slash@example.com")
        except Exception as exc:
            out["error"] = [type(exc).__name__, str(exc)]

        out["user"] = (await cached.get_user("BOB@example.com")).address
        out["domain"] = (await cached.get_domain("example.com")).name
        out["local"] = [await cached.is_local_domain(n) for n in ("example.com", "other.org")]
        out["auth_ok"] = (await cached.authenticate("bob", "bobpw", "example.com")).address
        out["auth_bad"] = await cached.authenticate("bob", "nope", "example.com")
        calls = Counting.auth_calls
        again = await cached.authenticate("bob", "bobpw", "example.com")  # remembered
        out["auth_again"] = [again.address, Counting.auth_calls - calls]
        await cached.authenticate("bob", "nope", "example.com")  # a wrong one: the directory
        out["auth_wrong_asks"] = Counting.auth_calls - calls
        admin.set_password("bob@example.com", "newpw")
        await task.deferLater(reactor, CACHE + 0.05, lambda: None)
        out["old_password_after"] = await cached.authenticate("bob", "bobpw", "example.com")
        admin.set_password("bob@example.com", "bobpw")
        user, clear = await cached.clear_password("bob@example.com")
        out["clear"] = [user.address, clear]
        await cached.record_login("bob@example.com", "pop3", "192.0.2.7")
        out["last_login"] = list(admin.last_login("bob@example.com")[:2])
        writes_before = Counting.login_writes
        await defer.gatherResults(
            [cached.record_login("bob@example.com", "imap", f"198.51.100.{n}") for n in range(12)]
        )
        out["burst_writes"] = Counting.login_writes - writes_before
        out["burst_ips"] = sorted(ip for _, ip, _ in admin.logins("bob@example.com", limit=30))
        out["maildir"] = str(await cached.user_maildir(await cached.get_user("bob@example.com")))

        # a slow (default-strength) password check must not stall the reactor
        strong = AsyncDirectory(SQLDirectory.open(URL), reactor=reactor)
        strong.sync.login_cache_seconds = 0  # time the hash itself, not the login cache
        strong.sync.set_password("slow@example.com", "slowpw")
        gaps, last = [], [reactor.seconds()]

        def tick():
            now = reactor.seconds()
            gaps.append(now - last[0])
            last[0] = now

        loop = task.LoopingCall(tick)
        loop.start(0.005)
        out["strong_auth"], out["strong_seconds"] = [], []
        for _ in range(3):
            started = reactor.seconds()
            user = await strong.authenticate("slow@example.com", "slowpw")
            out["strong_seconds"].append(reactor.seconds() - started)
            out["strong_auth"].append(user.address)
        loop.stop()
        out["max_tick_gap"] = max(gaps)
        strong.stop()
        strong.sync.close()
        cached.stop()
        print(json.dumps(out))

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
    """
)


@pytest.mark.parametrize("cache_seconds", [0.5])
def test_async_directory_runs_in_threads_and_caches_briefly(
    db_url: str, cache_seconds: float
) -> None:
    """S5/A5/A6: look-ups run in a pool and are cached; a change shows within cache_seconds;
    log-ins noted in a burst are all recorded, in a few writes."""
    done = subprocess.run(
        [sys.executable, "-c", SCENARIO, db_url, str(cache_seconds)],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["first"] == ["user"] * 5
    assert seen["calls_after_burst"] == 1  # five concurrent misses, one query
    assert seen["reactor_thread"] not in seen["threads"]  # the database ran elsewhere
    assert seen["right_after_change"] == "user"  # still cached
    assert 0 < seen["visible_after"] <= cache_seconds + 0.3  # and then visible, within bound
    assert seen["after_invalidate"] == "user"
    assert seen["error"][0] == "DirectoryError" and "'/'" in seen["error"][1]
    assert seen["user"] == "bob@example.com"
    assert seen["domain"] == "example.com"
    assert seen["local"] == [True, False]
    assert seen["auth_ok"] == "bob@example.com"
    assert seen["auth_bad"] is None
    # a successful log-in is remembered for cache_seconds, a wrong password is always checked
    assert seen["auth_again"] == ["bob@example.com", 0]
    assert seen["auth_wrong_asks"] == 1
    assert seen["old_password_after"] is None  # a changed password shows within cache_seconds
    assert seen["clear"] == ["bob@example.com", "bobpw"]
    assert seen["last_login"] == ["pop3", "192.0.2.7"]
    # a burst of log-ins is recorded in a few writes, every one of them
    assert seen["burst_writes"] <= 2
    assert seen["burst_ips"] == sorted([f"198.51.100.{n}" for n in range(12)] + ["192.0.2.7"])
    assert seen["maildir"] == "/srv/mail/example.com/bob"
    assert seen["strong_auth"] == ["slow@example.com"] * 3
    # argon2 at full strength takes tens of milliseconds; on the reactor thread it would stall
    # the 5 ms ticks for a whole check, in the pool they keep going (CPU sharing aside)
    assert min(seen["strong_seconds"]) > 0.03
    assert seen["max_tick_gap"] < 0.75 * min(seen["strong_seconds"])


def test_cache_lifetime_is_bounded_to_two_seconds(tmp_path) -> None:
    """S5: CLI changes must show within 2 s, so a longer cache is refused."""
    with SQLDirectory.open(f"sqlite:///{tmp_path / 'd.db'}") as directory:
        for bad in (2.5, -1):
            with pytest.raises(DirectoryError, match="0 to 2"):
                AsyncDirectory(directory, cache_seconds=bad, reactor=Clock())
        cached = AsyncDirectory(directory, cache_seconds=2, reactor=Clock())
        assert cached.sync is directory
        assert cached.cache_seconds == 2


def test_blocking_cache_keeps_answers_briefly_and_never_errors(tmp_path) -> None:
    """S5/A5: local delivery's TTLCache answers from memory within its lifetime, looks up again
    after it, never keeps an error, and refuses lifetimes over 2 s."""
    from mailmax.core.directory.cached import TTLCache

    now = [100.0]
    with SQLDirectory.open(f"sqlite:///{tmp_path / 'd.db'}") as directory:
        directory.add_domain("example.com", str(tmp_path / "mail"))
        directory.add_user("bob@example.com")
        calls: list[str] = []

        def get_user(address: str):
            calls.append(address)
            return directory.get_user(address)

        cache = TTLCache(get_user, 1.0, clock=lambda: now[0])
        assert cache.get("bob@example.com").enabled
        directory.edit_user("bob@example.com", account_type="disabled")
        now[0] += 0.9
        assert cache.get("bob@example.com").enabled  # still the remembered answer
        now[0] += 0.2
        assert not cache.get("bob@example.com").enabled  # looked up again after 1 s
        assert calls == ["bob@example.com", "bob@example.com"]

        def broken(address: str):
            calls.append(address)
            raise RuntimeError("database unavailable")

        failing = TTLCache(broken, 1.0, clock=lambda: now[0])
        for _ in range(2):
            with pytest.raises(RuntimeError):
                failing.get("bob@example.com")
        assert len(calls) == 4  # the error was not remembered
        with pytest.raises(DirectoryError, match="0 to 2"):
            TTLCache(get_user, 2.5)
