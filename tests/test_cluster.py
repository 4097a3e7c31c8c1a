"""Clustered domains on two real nodes sharing the PostgreSQL test cluster: mail relayed to the
home node, POP3/IMAP log-ins proxied or referred there, and mailboxes moved between nodes."""

from __future__ import annotations

import hashlib
import imaplib
import poplib
import re
import signal
import smtplib
import socket
import ssl
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from mailmax.core.cli.main import cli
from mailmax.core.store.maildir import deliver
from tests.api_support import ApiClient, admin_cli
from tests.cluster_support import (
    ADDRESSES,
    PASSWORDS,
    SECRET,
    Node,
    peer_port,
    running_nodes,
    send,
)
from tests.fixtures.ports import wait_until
from tests.fixtures.webadmin import browser as browser
from tests.fixtures.webadmin import signed_in


@pytest.fixture(scope="module")
def nodes(postgres: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    """Nodes a and b running on one shared PostgreSQL directory."""
    yield from running_nodes(postgres, tmp_path_factory)


def _subjects(messages: list[bytes]) -> set[bytes]:
    return {re.search(rb"Subject: ([^\r\n]+)", m).group(1) for m in messages}


def _insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


# ---------------------------------------------------------------------- mail to the home node
def test_mail_for_a_user_homed_on_b_sent_to_a_lands_in_bs_maildir(nodes) -> None:
    """Q14: a accepts mail for bob (home b), relays it to b, b stores it; a keeps no copy."""
    a, b = nodes["a"], nodes["b"]
    send(a, "bob@example.test", "first")
    send(a, "bob@example.test", "second")
    stored = b.wait_for_mail("bob@example.test", 2, timeout=30)
    assert _subjects(stored) == {b"first", b"second"}
    assert all(b"with ESMTPSA" in m for m in stored)  # taken over TLS from a logged-in peer
    assert a.messages("bob@example.test") == []


def test_mail_for_a_user_homed_on_a_sent_to_b_lands_in_as_maildir(nodes) -> None:
    """Q14: the domain's home node is the home of users without their own (alice: a)."""
    a, b = nodes["a"], nodes["b"]
    send(b, "alice@example.test", "via b")
    [stored] = a.wait_for_mail("alice@example.test", timeout=30)
    assert b"Subject: via b" in stored
    assert b.messages("alice@example.test") == []


def test_notes_made_where_mail_arrives_travel_to_the_home_node(nodes) -> None:
    """Q14: policy runs once, on a; what it noted (here: a test plugin's folder choice) is
    what b's delivery acts on."""
    a, b = nodes["a"], nodes["b"]
    send(a, "bob@example.test", "tag me")
    wait_until(lambda: b.messages("bob@example.test", "Tagged"), 30, "the tagged copy on b")
    [stored] = b.messages("bob@example.test", "Tagged")
    assert b"Subject: tag me" in stored


def test_the_node_listener_takes_mail_only_from_nodes_with_the_secret(nodes) -> None:
    """Q14: the node-to-node listener wants TLS and a node's login with the shared secret."""
    with smtplib.SMTP(ADDRESSES["b"], peer_port(nodes["b"]), timeout=10) as client:
        client.ehlo("test")
        assert client.mail("x@elsewhere.test")[0] == 530
        client.rset()
        client.starttls(context=_insecure())
        client.ehlo("test")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("node:a", "wrong-secret-wrong-secret")
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login("bob@example.test", PASSWORDS["bob"])
        client.login("node:a", SECRET)
        assert client.mail("x@elsewhere.test")[0] == 250


def test_each_node_queues_in_its_own_spool(nodes) -> None:
    """Q14: every node has its own queue directory."""
    queues = {node.data_dir / "queue" for node in nodes.values()}
    assert len(queues) == 2 and all(queue.is_dir() for queue in queues)


def test_clustered_domains_from_the_command_line(nodes) -> None:
    """Q14: on a node, `domain add --type clustered` stores a mail directory relative to each
    node's data directory; an unknown home node is refused with the known ones."""
    a = nodes["a"]
    added = _mailmax(a, "domain", "add", "other.test", "--type", "clustered", "--home-node", "b")
    assert added.exit_code == 0, added.output
    unknown = _mailmax(a, "user", "add", "x@other.test", "--password", "pw12345678",
                       "--home-node", "zz")  # fmt: skip
    assert unknown.exit_code == 1 and "no node 'zz' in [cluster.nodes]" in unknown.output
    assert "the nodes are: a, b" in unknown.output
    plain = _mailmax(a, "domain", "add", "plain.test")
    assert plain.exit_code == 0, plain.output
    ignored = _mailmax(a, "user", "add", "x@plain.test", "--password", "pw12345678",
                       "--home-node", "b")  # fmt: skip
    assert ignored.exit_code == 1 and "for users of clustered domains" in ignored.output
    directory = a.directory()
    try:
        assert directory.get_domain("other.test").mail_dir == "mail/other.test"
    finally:
        directory.close()


# ---------------------------------------------------------------------- log-ins elsewhere
def test_pop3_login_on_a_reads_bobs_mailbox_on_b(nodes) -> None:
    """Q14: a checks bob's password, then proxies the POP3 session to b's mailbox."""
    a = nodes["a"]
    client = poplib.POP3(a.address, a.ports["pop3"], timeout=10)
    try:
        client.user("bob@example.test")
        assert b"mailbox on server b" in client.pass_(PASSWORDS["bob"])
        assert client.stat()[0] == 2
        assert _subjects([b"\r\n".join(client.retr(n)[1]) for n in (1, 2)]) == {
            b"first",
            b"second",
        }
    finally:
        client.quit()


def test_pop3_login_on_a_with_a_wrong_password_is_refused_on_a(nodes) -> None:
    """Q14: the password is checked on the node the client reached, before any proxying."""
    a = nodes["a"]
    client = poplib.POP3(a.address, a.ports["pop3"], timeout=10)
    try:
        client.user("bob@example.test")
        with pytest.raises(poplib.error_proto, match="Authentication failed"):
            client.pass_("not-bobs-password")
    finally:
        client.quit()


def test_pop3_apop_for_a_user_homed_elsewhere_says_why_it_is_refused(nodes) -> None:
    """Q14: APOP cannot be passed on to the home node (no password travels): it says so."""
    a = nodes["a"]
    client = poplib.POP3(a.address, a.ports["pop3"], timeout=10)
    try:
        stamp = re.search(rb"<[^>]+>", client.welcome).group(0)
        digest = hashlib.md5(stamp + PASSWORDS["dave"].encode()).hexdigest()
        with pytest.raises(poplib.error_proto, match=r"SYS/PERM.*APOP cannot be passed on"):
            client._shortcmd(f"APOP dave@example.test {digest}")
    finally:
        client.quit()


def _rss(pid: int) -> int:
    """Resident memory of process ``pid`` in bytes."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024


def test_a_proxied_session_buffers_little_while_the_client_does_not_read(nodes) -> None:
    """Q14: a 20 MB message RETRieved through a's proxy by a client that does not read: a
    stops reading from b instead of holding the message (backpressure), then passes it all."""
    a, b = nodes["a"], nodes["b"]
    line = b"x" * 998 + b"\r\n"
    deliver(b.maildir("dave@example.test"), "INBOX", b"Subject: big\r\n\r\n" + line * 20_000,
            "big-1", fsync=False)  # fmt: skip
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
        sock.settimeout(10)
        sock.connect((a.address, a.ports["pop3"]))
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(f"USER dave@example.test\r\nPASS {PASSWORDS['dave']}\r\n".encode())
        assert reader.readline().startswith(b"+OK") and reader.readline().startswith(b"+OK")
        before = _rss(a.proc.pid)
        sock.sendall(b"RETR 1\r\n")
        peak = before
        for _ in range(20):  # the window in which a would take in the whole message
            time.sleep(0.05)
            peak = max(peak, _rss(a.proc.pid))
        assert peak - before < 8 * 1024 * 1024, (before, peak)
        size = 0
        while (chunk := reader.readline()) != b".\r\n":
            size += len(chunk)
        assert size > 20_000 * 1000


def test_imap_login_on_a_reaches_bobs_mailbox_on_b(nodes) -> None:
    """Q14: IMAP on a (proxy, the default): SELECT and FETCH show bob's mail on b."""
    a = nodes["a"]
    with imaplib.IMAP4(a.address, a.ports["imap"], timeout=10) as client:
        status, text = client.login("bob@example.test", PASSWORDS["bob"])
        assert status == "OK" and b"mailbox on server b" in text[0]
        assert client.select("INBOX") == ("OK", [b"2"])
        status, data = client.fetch("1:2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert _subjects([data[0][1], data[2][1]]) == {b"first", b"second"}
        client.logout()


def test_imap_login_on_b_for_alice_reaches_a_over_imaps(nodes) -> None:
    """Q14: the other way round, with the client on an implicit-TLS port of b."""
    b = nodes["b"]
    with imaplib.IMAP4_SSL(
        b.address, b.ports["imaps"], ssl_context=_insecure(), timeout=10
    ) as client:
        assert client.login("alice@example.test", PASSWORDS["alice"])[0] == "OK"
        assert client.select("INBOX") == ("OK", [b"1"])
        client.logout()


def test_imap_referral_option(nodes) -> None:
    """Q14: with imap_logins = "referral", a advertises LOGIN-REFERRALS and refers bob to b."""
    a = nodes["a"]
    text = a.config_path.read_text()
    a.config_path.write_text(text.replace("[cluster]\n", '[cluster]\nimap_logins = "referral"\n'))
    _reload(a, referrals=True)
    try:
        with imaplib.IMAP4(a.address, a.ports["imap"], timeout=10) as client:
            assert "LOGIN-REFERRALS" in client.capabilities
            with pytest.raises(imaplib.IMAP4.error) as refused:
                client.login("bob@example.test", PASSWORDS["bob"])
            b_imaps = nodes["b"].ports["imaps"]
            assert f"[REFERRAL imap://bob%40example.test;AUTH=*@127.0.0.2:{b_imaps}/]" in str(
                refused.value
            )
            assert client.login("alice@example.test", PASSWORDS["alice"])[0] == "OK"  # on a
    finally:
        a.config_path.write_text(text)
        _reload(a, referrals=False)


def _reload(node: Node, *, referrals: bool) -> None:
    """SIGHUP ``node`` and wait until its IMAP capabilities show the new setting."""
    node.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while True:
        with imaplib.IMAP4(node.address, node.ports["imap"], timeout=10) as client:
            if ("LOGIN-REFERRALS" in client.capabilities) == referrals:
                return
        assert time.monotonic() < deadline, node.log_text()[-2000:]
        time.sleep(0.1)


def test_mail_waits_on_a_while_its_home_node_is_down(nodes) -> None:
    """Q14: with b stopped, a still accepts mail for bob and keeps it queued; it reaches b's
    Maildir once b is back."""
    a, b = nodes["a"], nodes["b"]
    had = len(b.messages("bob@example.test"))
    b.stop()
    try:
        send(a, "bob@example.test", "while b was down")
        wait_until(lambda: "result=deferred" in a.log_text(), 30, "a deferring the relay")
    finally:
        b.start(timeout=60)
    stored = b.wait_for_mail("bob@example.test", had + 1, timeout=30)
    assert b"while b was down" in b"".join(stored)
    assert a.messages("bob@example.test") == []


# ---------------------------------------------------------------------- moving a mailbox
def _mailmax(node: Node, *args: str) -> Result:
    """Run the ``mailmax`` command in this process against ``node``'s config."""
    return CliRunner().invoke(cli, ["--config", str(node.config_path), *args])


def _moving(node: Node, address: str) -> bool:
    directory = node.directory()
    try:
        return directory.get_user(address).moving
    finally:
        directory.close()


def test_moving_carol_from_a_to_b_keeps_all_her_mail(nodes) -> None:
    """Q14: carol's mail, folders and flags go to b; mail sent during the move waits and
    arrives on b; afterwards log-ins and mail on either node reach b."""
    a, b = nodes["a"], nodes["b"]
    carol = "carol@example.test"
    send(b, carol, "before 1")
    send(a, carol, "before 2")
    a.wait_for_mail(carol, 2, timeout=30)
    with imaplib.IMAP4(a.address, a.ports["imap"], timeout=10) as client:
        client.login(carol, PASSWORDS["carol"])
        assert client.create("Archive")[0] == "OK"
        assert client.append("Archive", r"(\Seen)", None, b"Subject: kept\r\n\r\nkept\r\n")[0]
        client.select("INBOX")
        client.store("1", "+FLAGS", r"(\Flagged)")
        validity = client.response("UIDVALIDITY")
        client.logout()

    with ThreadPoolExecutor(1) as pool:
        mover = pool.submit(_mailmax, a, "user", "move", carol, "--node", "b")
        wait_until(lambda: _moving(a, carol) or mover.done(), 10, "carol marked as moving")
        assert not mover.done(), mover.result().output
        send(a, carol, "during via a")
        send(b, carol, "during via b")
        moved = mover.result(timeout=60)
    assert moved.exit_code == 0, moved.output
    assert "moved carol@example.test from node a to node b" in moved.output

    assert _subjects(b.wait_for_mail(carol, 4)) == {
        b"before 1",
        b"before 2",
        b"during via a",
        b"during via b",
    }
    assert not a.maildir(carol).exists()  # renamed aside, never merged with anything
    assert any(p.name.startswith("carol.moved-b-") for p in a.maildir(carol).parent.iterdir())
    with imaplib.IMAP4(b.address, b.ports["imap"], timeout=10) as client:
        client.login(carol, PASSWORDS["carol"])
        client.select("INBOX")
        assert client.response("UIDVALIDITY") == validity
        assert b"\\Flagged" in client.fetch("1", "(FLAGS)")[1][0]
        assert client.select("Archive") == ("OK", [b"1"])
        client.logout()
    with imaplib.IMAP4(a.address, a.ports["imap"], timeout=10) as client:  # proxied to b now
        assert b"mailbox on server b" in client.login(carol, PASSWORDS["carol"])[1][0]
        client.logout()


def test_move_refusals_say_why_and_change_nothing(nodes) -> None:
    """Q14: a move run on a node that does not hold the mailbox is refused, and so is changing
    the home node without moving the mail."""
    a, b = nodes["a"], nodes["b"]
    wrong = _mailmax(a, "user", "move", "bob@example.test", "--node", "a")
    assert wrong.exit_code == 1
    assert "is on node b: run this command there; the mailbox stays where it was" in wrong.output
    edit = _mailmax(b, "user", "edit", "bob@example.test", "--home-node", "a")
    assert edit.exit_code == 1 and "mailmax user move" in edit.output
    directory = a.directory()
    try:
        bob = directory.get_user("bob@example.test")
    finally:
        directory.close()
    assert (bob.home_node, bob.moving) == ("b", False)


def test_moving_mailboxes_through_the_api_and_the_web_admin(nodes, browser) -> None:
    """Q14, M1: a system administrator moves a mailbox with the API and with the form on the
    user page; refusals give the command line's words (next to the field in the browser)."""
    a, b = nodes["a"], nodes["b"]
    erin, frank = "erin@example.test", "frank@example.test"
    for address in (erin, frank):
        admin_cli(a, "user", "add", address, "--password", "pw12345678")
    admin_cli(a, "admin", "grant", "postmaster@example.test", "--system")
    token = admin_cli(a, "admin", "token", "create", "postmaster@example.test", "--name", "t")
    token = token.strip()
    send(a, erin, "before the move")
    a.wait_for_mail(erin, 1, timeout=30)

    wrong = ApiClient(b).call("POST", f"/api/v1/users/{erin}/move", token, {"node": "b"})
    assert wrong.status == 422, wrong.raw
    assert wrong.body["error"]["message"] == (
        f"the mailbox of {erin} is on node a: run this command there; the mailbox stays where "
        "it was"
    )
    moved = ApiClient(a).call("POST", f"/api/v1/users/{erin}/move", token, {"node": "b"})
    assert moved.status == 200, moved.raw
    assert moved.body["message"].startswith(f"moved {erin} from node a to node b (")
    assert (moved.body["from_node"], moved.body["to_node"]) == ("a", "b")
    assert _subjects(b.wait_for_mail(erin, 1)) == {b"before the move"}

    web = signed_in(browser, a)
    web.open(f"/admin/users/{frank}")
    assert web.text("#h-move") == "Cluster node"
    node = Select(browser.find_element(By.ID, "f-node"))
    assert [o.text for o in node.options] == ["a", "b"]
    node.select_by_visible_text("a")
    web.submit("form[action$='/move']")
    assert web.text("#f-node-error") == (
        f"the mailbox of {frank} is on node a already; the mailbox stays where it was"
    )
    Select(browser.find_element(By.ID, "f-node")).select_by_visible_text("b")
    web.submit("form[action$='/move']")
    assert web.text(".flash").startswith(f"moved {frank} from node a to node b ("), web.text("body")
    assert web.text("#home-node") == "The mailbox is on node b."
    web.sign_out()
