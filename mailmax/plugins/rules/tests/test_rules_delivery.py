"""Rules over real SMTP and IMAP (R1-R4): each condition and action, order, terminate, dry run.

One server for the module (see ``conftest.py``); each test keeps to its own user, and system and
domain rules match only messages with a header of their own test.
"""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

from mailmax.plugins.rules.tests.conftest import World
from mailmax.plugins.rules.tests.support import (
    add,
    cli,
    delivered,
    imap_folders,
    imap_message,
    message,
    rule,
    send,
    wait_count,
)

CAROL, DAVE, ERIN, FRANK = (f"{n}@example.test" for n in ("carol", "dave", "erin", "frank"))
GINA, HANK, IVAN, JUDY = (f"{n}@example.test" for n in ("gina", "hank", "ivan", "judy"))
KATE = "kate@example.test"
ALICE = "alice@example.test"
ME = ["--user"]


def test_each_condition_files_the_message_in_its_folder(world: World) -> None:
    """R2, R3: size, header exists / whole word / negated, body, entire text, attachment name
    and type, %F and %M programs, date, weekday and time, any; the first rule that matches
    terminates, so each message lands in its condition's folder (checked over IMAP)."""
    server, out = world.server, world.out / "files.log"
    today = datetime.datetime.now(datetime.UTC).date().isoformat()
    check_files = f"program {world.programs['check-files']} %F {out}"
    check_message = f"program {world.programs['check-message']} %M"
    table = [
        ("big", ["size between 20k 1m"], "Big"),
        ("flag", ["header X-Flag exists"], "Flagged"),
        ("invoice", ["header Subject contains word invoice"], "Invoice"),
        ("neg", ["header X-Neg exists", "header Subject not contains skip"], "Neg"),
        ("body", ['body contains "secret handshake"'], "Body"),
        ("text", ["text contains word MAGICWORD"], "Text"),
        ("zip", ['attachment-name "*.zip"'], "Zips"),
        ("docs", ["attachment-type application/pdf,.docx"], "Docs"),
        ("scan", ["header X-Scan exists", check_files], "Scanned"),
        ("kill", ["header X-Kill exists", check_message], "Killed"),
        (
            "when",
            ["header X-When exists", f"date on {today}", "weekday between 1 7", "time after 00:00"],
            "Dated",
        ),
        ("never", ["date before 2000-01-01"], "Never"),
        ("rest", ["any"], "Other"),
    ]
    for name, ifs, folder in table:
        add(server, name, [*ME, CAROL], ifs, [f"folder {folder}", "terminate"])
    messages = {
        "big one": message("big one", "x" * 30_000),
        "flag": message("flag", headers={"X-Flag": "1"}),
        "Your invoice 42": message("Your invoice 42"),
        "invoices overview": message("invoices overview"),
        "neg one": message("neg one", headers={"X-Neg": "1"}),
        "neg skip": message("neg skip", headers={"X-Neg": "1"}),
        "body": message("body", "say the secret handshake now"),
        "text": message("text", headers={"X-Code": "MAGICWORD"}),
        "zip": message("zip", attachments=[("data.ZIP", "application/octet-stream", b"PK")]),
        "pdf": message("pdf", attachments=[("r.pdf", "application/pdf", b"%PDF-1.4")]),
        "scan": message(
            "scan",
            headers={"X-Scan": "1"},
            attachments=[
                ("bad.txt", "text/plain", b"a virus inside"),
                ("ok.bin", "application/octet-stream", b"harmless"),
            ],
        ),
        "scan clean": message(
            "scan clean", headers={"X-Scan": "1"}, attachments=[("c.txt", "text/plain", b"fine")]
        ),
        "kill": message("kill", headers={"X-Kill": "yes"}),
        "kill not": message("kill not", headers={"X-Kill": "no"}),
        "when": message("when", headers={"X-When": "1"}),
    }
    for data in messages.values():
        send(server, CAROL, data)
    folders = wait_count(server, CAROL, len(messages))
    assert folders == {
        "Big": ["big one"],
        "Flagged": ["flag"],
        "Invoice": ["Your invoice 42"],
        "Neg": ["neg one"],
        "Body": ["body"],
        "Text": ["text"],
        "Zips": ["zip"],
        "Docs": ["pdf"],
        "Scanned": ["scan"],
        "Killed": ["kill"],
        "Dated": ["when"],
        "Other": sorted(["invoices overview", "neg skip", "scan clean", "kill not"]),
    }
    # %F handed the attachments decoded (base64 undone), each as its own file
    seen = out.read_text().splitlines()
    assert "1-bad.txt\ta virus inside" in seen and "2-ok.bin\tharmless" in seen
    assert not list((server.data_dir / "rules" / "run").iterdir())  # temp folders removed
    assert "rule program" in server.log_text()  # output logged


def test_actions_forward_discard_note_strip_and_run(world: World) -> None:
    """R4: forward (a remote copy with an SRS sender reaches the sink, a local one arrives),
    discard (nothing stored) with a note to self (which no rule runs on again), discard
    attachments (replaced by a short text), run a program (its output logged)."""
    server, sink = world.server, world.sink
    ran = world.out / "ran.log"
    add(
        server,
        "fwd",
        [*ME, DAVE],
        ["header X-Fwd exists"],
        ["forward far@remote.test,alice@example.test", "folder Forwarded"],
    )
    add(
        server,
        "drop",
        [*ME, DAVE],
        ["header Subject contains drop"],
        ["discard", 'note "a message was dropped"'],
    )
    add(
        server,
        "strip",
        [*ME, DAVE],
        ["header X-Strip exists"],
        ["discard-attachments", "folder Stripped"],
    )
    add(
        server,
        "run",
        [*ME, DAVE],
        ["header X-Run exists"],
        [f"program {world.programs['record']} %M {ran}"],
    )
    send(server, DAVE, message("fwd", headers={"X-Fwd": "1"}), sender="joe@sender.test")
    send(server, DAVE, message("drop me"))
    attachment = ("a.exe", "application/octet-stream", b"MZ binary")
    send(
        server,
        DAVE,
        message("strip", "keep this text", headers={"X-Strip": "1"}, attachments=[attachment]),
    )
    send(server, DAVE, message("run", headers={"X-Run": "1"}))

    (tx,) = sink.wait_for(1)
    assert tx["rcpts"] == ["far@remote.test"]
    assert tx["mail_from"].startswith("SRS0=") and tx["mail_from"].endswith("@example.test")
    assert b"Subject: fwd" in sink.message(tx)
    folders = wait_count(server, DAVE, 4)
    assert folders["Forwarded"] == ["fwd"] and folders["Stripped"] == ["strip"]
    assert folders["INBOX"] == sorted(["run", "Rule note: drop me"])
    assert "fwd" in wait_count(server, ALICE, 1)["INBOX"]

    note = imap_message(server, DAVE, "INBOX", "Rule note: drop me")
    text = note.get_body(("plain",)).get_content()
    assert "user dave@example.test: drop: a message was dropped" in text
    assert "What became of it: discarded" in text
    assert note["Auto-Submitted"] == "auto-generated"

    stripped = imap_message(server, DAVE, "Stripped", "strip")
    parts = [p for p in stripped.walk() if not p.is_multipart()]
    assert [p.get_content().strip() for p in parts] == [
        "keep this text",
        "An attachment was removed by a mail rule: a.exe (application/octet-stream).",
    ]
    assert stripped.as_bytes().count(b"Delivered-To: dave@example.test") == 1
    assert server.wait_for(lambda: ran.exists() and ran.read_text()) == "Subject: run\n"
    assert "recorded Subject: run" in server.wait_for(
        lambda: "recorded" in server.log_text() and server.log_text()
    )


def test_order_system_domain_user_terminate_disable_and_move(world: World) -> None:
    """R1: the system list runs first, then the domain's, then the user's (the last folder
    chosen wins); terminate stops the lists; a disabled rule is skipped; moving a rule
    changes the order. Every change holds at once, without a reload."""
    server = world.server
    order = ["header X-Order exists"]
    add(server, "sys", ["--system"], order, ["folder Sys"])
    add(server, "dom", ["--domain", "example.test"], order, ["folder Dom"])
    add(server, "usr-a", [*ME, ERIN], order, ["folder UserA"])
    add(server, "usr-b", [*ME, ERIN], [*order, "header Subject contains b"], ["folder UserB"])
    send(server, ERIN, message("o1", headers={"X-Order": "1"}))
    wait_count(server, ERIN, 1)
    line = delivered(server, "to=erin@example.test")
    assert "folder=UserA" in line
    reason = "rule system: sys; domain example.test: dom; user erin@example.test: usr-a"
    assert reason in line

    rule(server, "edit", "dom", "--domain", "example.test", "--then=folder Dom", "--then=terminate")
    send(server, ERIN, message("o2", headers={"X-Order": "1"}))
    wait_count(server, ERIN, 2)
    rule(server, "disable", "dom", "--domain", "example.test")
    send(server, ERIN, message("o3 b", headers={"X-Order": "1"}))
    wait_count(server, ERIN, 3)
    moved = rule(server, "move", "usr-b", "1", *ME, ERIN)["object"]
    assert moved["position"] == 1
    send(server, ERIN, message("o4 b", headers={"X-Order": "1"}))
    folders = wait_count(server, ERIN, 4)
    assert folders["UserA"] == ["o1", "o4 b"] and folders["Dom"] == ["o2"]
    assert folders["UserB"] == ["o3 b"]
    listed = rule(server, "list", *ME, ERIN)
    assert [(r["position"], r["name"]) for r in listed] == [(1, "usr-b"), (2, "usr-a")]
    rule(server, "delete", "sys", "--system")
    rule(server, "delete", "dom", "--domain", "example.test")


def test_dry_run_agrees_with_the_server_and_takes_a_moment(world: World, tmp_path: Path) -> None:
    """`mailmax rule test` prints what the server then does (the same folders, the discard);
    with --at it judges date, weekday and time conditions at that moment."""
    server = world.server
    add(server, "junk", [*ME, FRANK], ["header Subject contains spam"], ["folder Junk"])
    add(server, "gone", [*ME, FRANK], ["size > 50k"], ["discard"])
    add(
        server,
        "office",
        [*ME, FRANK],
        ["time between 09:00 17:00", "weekday between 2 6", "header X-Office exists"],
        ["folder Office"],
    )
    add(
        server,
        "xmas",
        [*ME, FRANK],
        ["date between 2027-12-24 2027-12-26", "header X-Office exists"],
        ["folder Xmas"],
    )
    files = {
        "spam": message("cheap spam"),
        "plain": message("plain"),
        "huge": message("huge", "y" * 60_000),
    }
    paths = []
    for name, data in files.items():
        (tmp_path / f"{name}.eml").write_bytes(data)
        paths.append(str(tmp_path / f"{name}.eml"))
    answer = rule(server, "test", "--user", FRANK, *paths)
    planned = {Path(m["message"]).stem: m for m in answer["messages"]}
    assert planned["spam"]["folder"] == "Junk" and planned["plain"]["matched"] == []
    assert planned["huge"]["discard"] is True
    assert planned["spam"]["matched"] == ["user frank@example.test: junk"]
    for data in files.values():
        send(server, FRANK, data)
    folders = wait_count(server, FRANK, 2)
    delivered(server, "to=frank@example.test folder=")
    assert folders == {"INBOX": ["plain"], "Junk": ["cheap spam"]}  # the huge one: discarded

    office = tmp_path / "office.eml"
    office.write_bytes(message("office", headers={"X-Office": "1"}))
    at = {
        "2027-03-03T10:00": "Office",  # a Wednesday in office hours
        "2027-03-03T18:00": "INBOX",  # after hours
        "2027-03-07T10:00": "INBOX",  # a Sunday
        "2027-12-24T10:00": "Xmas",  # a Friday in office hours: Xmas comes later and wins
    }
    for moment, folder in at.items():
        result = cli(server, "rule", "test", "--user", FRANK, "--at", moment, str(office), "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["messages"][0]["folder"] == folder, moment
    text = cli(server, "rule", "test", "--user", FRANK, "--at", "2027-12-24T10:00", str(office))
    assert "matched: user frank@example.test: office" in text.stdout
    assert "store in: Xmas" in text.stdout
    assert imap_folders(server, FRANK) == {
        "INBOX": ["plain"],
        "Junk": ["cheap spam"],
    }  # the dry run stored nothing


def test_auto_respond_answers_once_per_sender_and_never_a_list(world: World) -> None:
    """R4: 'respond' and 'respond-file' reply with the auto-responder's code: from <> to the
    sender, once per sender, never to list mail."""
    server, sink = world.server, world.sink
    add(
        server,
        "away",
        ["--user", "bob@example.test"],
        ["header X-Away exists"],
        ['respond "I am away until Monday"'],
    )
    add(
        server,
        "away-file",
        ["--user", "bob@example.test"],
        ["header X-Away-File exists"],
        ["respond-file away.txt"],
    )
    bob = "bob@example.test"
    mail = message("are you there", headers={"X-Away": "1"})
    mail = mail.replace(b"To: someone@example.test", b"To: bob@example.test")
    send(server, bob, mail, sender="ann@sender.test")
    send(server, bob, mail, sender="ann@sender.test")
    listed = mail.replace(b"Subject:", b"List-Id: <news.sender.test>\r\nSubject:")
    send(server, bob, listed, sender="news@sender.test")
    from_file = mail.replace(b"X-Away: 1", b"X-Away-File: 1")
    send(server, bob, from_file, sender="cy@sender.test")
    server.wait_for(
        lambda: server.log_text().count("auto-reply to <") >= 4, what="four reply decisions"
    )
    log = server.log_text()
    assert "auto-reply to <ann@sender.test>: the sender was answered in the last 7 day(s)" in log
    assert "auto-reply to <news@sender.test>: " in log
    replies = [
        tx
        for tx in sink.wait_for(3)
        if tx["rcpts"][0] in ("ann@sender.test", "news@sender.test", "cy@sender.test")
    ]
    assert sorted(tx["rcpts"][0] for tx in replies) == ["ann@sender.test", "cy@sender.test"]
    for tx in replies:
        data = sink.message(tx)
        assert tx["mail_from"] == "" and b"Auto-Submitted: auto-replied" in data
    by_rcpt = {tx["rcpts"][0]: sink.message(tx) for tx in replies}
    assert b"I am away until Monday" in by_rcpt["ann@sender.test"]
    assert b"Out of the office (from a file)" in by_rcpt["cy@sender.test"]
    assert wait_count(server, bob, 4)["INBOX"] == ["are you there"] * 4


def test_validation_says_what_to_fix_and_changes_nothing(world: World) -> None:
    """R5: `mailmax rule add` refuses bad input with exit status 1 and a message that says
    what to fix; nothing is stored. A good rule reads back in its canonical spelling."""
    server = world.server
    where = ["--user", "alice@example.test"]
    bad = {
        ("", "any", "discard"): "a rule needs a name",
        ("n", "header Subject contains a|b", "discard"): "has a '|'",
        ("n", "size > lots", "discard"): "'lots' is not a number of bytes",
        ("n", "size between 9 3", "discard"): "runs high to low; swap them",
        ("n", "date on 31.12.2027", "discard"): "not a date written YYYY-MM-DD",
        ("n", "time after 25:00", "discard"): "not a time written HH:MM",
        ("n", "weekday on 8", "discard"): "not a day 1 (Sunday) to 7 (Saturday)",
        ("n", "header Subject: contains x", "discard"): "no ':' and no spaces",
        ("n", "any", "folder ../etc"): "is not a folder name",
        ("n", "any", "forward bob"): "'bob' is not an address",
        ("n", "any", "respond " + "x" * 256): "longer than 255 characters",
        ("n", "any", "respond-file ../passwd"): "is not a file in the reply folder",
        ("n", "program /bin/rm %F", "discard"): "/bin/rm is not on the system's allow-list",
        ("n", "sender is bob", "discard"): "'sender' is not a condition",
        ("n", None, "discard"): "at least one condition",
        ("n", "any", None): "at least one action",
    }
    for (name, condition, action), message_text in bad.items():
        args = ["rule", "add", name, *where]
        args += [f"--if={condition}"] if condition else []
        args += [f"--then={action}"] if action else []
        result = cli(server, *args)
        assert result.exit_code == 1, (args, result.output)
        assert message_text in result.output and "nothing was changed" in result.output, (
            args,
            result.output,
        )
    assert rule(server, "list", *where) == []
    alone = cli(server, "rule", "add", "x", "--if=any", "--then=discard")
    assert alone.exit_code == 1 and "exactly one of --system" in alone.output

    added = add(
        server,
        "ok",
        where,
        ["size >= 2K", "header X-A not contains word 'b c'"],
        ["folder 'My Stuff'", "terminate"],
    )
    shown = rule(server, "show", "ok", *where)
    assert shown["conditions"] == ["size >= 2048", "header X-A not contains word 'b c'"]
    assert shown["actions"] == ["folder 'My Stuff'", "terminate"] == added["actions"]
    assert shown["enabled"] is True and shown["position"] == 1
    taken = cli(server, "rule", "add", "ok", *where, "--if=any", "--then=discard")
    assert taken.exit_code == 1 and "already has a rule called 'ok'" in taken.output
    missing = cli(server, "rule", "delete", "nope", *where)
    assert missing.exit_code == 1 and "has no rule 'nope'" in missing.output
    rule(server, "delete", "ok", *where)


def test_each_recipient_of_one_message_gets_its_own_rules(world: World) -> None:
    """R1, R2: one message for three users, each with rules of their own (header, body, none):
    each copy lands where that user's rules say."""
    server = world.server
    add(
        server,
        "by-subject",
        ["--user", GINA],
        ["header Subject contains word shared"],
        ["folder Shared"],
    )
    add(server, "by-body", ["--user", HANK], ["body contains marker-7"], ["folder Found"])
    add(server, "miss", ["--user", HANK], ["header Subject contains word nothing"], ["discard"])
    with server.smtp() as client:
        refused = client.sendmail(
            "joe@sender.test", [GINA, HANK, IVAN], message("shared news", "a marker-7 inside")
        )
    assert refused == {}
    assert wait_count(server, GINA, 1) == {"Shared": ["shared news"]}
    assert wait_count(server, HANK, 1) == {"Found": ["shared news"]}
    assert wait_count(server, IVAN, 1) == {"INBOX": ["shared news"]}


def test_a_folder_removed_between_deliveries_is_made_again(world: World) -> None:
    """R2: a rule's folder that disappears (removed by hand) is created again by the next
    delivery into it; nothing is lost."""
    server, user = world.server, JUDY
    add(server, "keep", ["--user", user], ["any"], ["folder Kept"])
    with server.smtp() as client:
        assert client.sendmail("joe@sender.test", [user], message("first")) == {}
    assert wait_count(server, user, 1) == {"Kept": ["first"]}
    shutil.rmtree(server.maildir(user, "Kept"))
    with server.smtp() as client:
        assert client.sendmail("joe@sender.test", [user], message("second")) == {}
    assert wait_count(server, user, 1) == {"Kept": ["second"]}


def test_large_small_and_forged_note_messages_all_run_the_rules(world: World) -> None:
    """R2: a message too large to read on the reactor thread, a small one, and one with a
    rule-note header the server did not make all go through the user's rules."""
    server, user = world.server, KATE
    add(server, "sort", ["--user", user], ["header X-Sort exists"], ["folder Sorted"])
    sort = {"X-Sort": "1"}
    send(server, user, message("large", "a line of the large message\n" * 4000, headers=sort))
    send(server, user, message("small", headers=sort))
    send(server, user, message("forged", headers={**sort, "X-MailMax-Rule-Note": "0" * 32}))
    send(server, user, message("unsorted"))
    folders = wait_count(server, user, 4)
    assert folders == {"INBOX": ["unsorted"], "Sorted": sorted(["large", "small", "forged"])}
