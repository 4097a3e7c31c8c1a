"""Acceptance with the SMTP policy plugins on: MailMax with bans + rbl + tarpit (and any other
plugin named) against the default plugin set, and the default set against no plugins at all,
in the same run, at 4 KiB and C=10 / C=50.

A twisted.names DNS server (the tests' fixture) serves the block list ``bl.test``; the rbl
plugin asks it about the client (127.0.0.1, not listed) and keeps the answer in its cache. Three
MailMax servers are started side by side (``none``: no plugins; ``default``: the built-in
default set; ``policy``: the default set plus ``--policy``), each warmed up, then measured with
``bench/smtp_load.py`` in interleaved rounds (every variant at every level in each round, so
a slow spell of the machine hits all alike). Each figure is the median over the rounds; the
ratios compare those medians. Every message is durable (fsync) before its 250.

Usage::

    python bench/policy_accept.py                          # 3 rounds of 2 s per cell
    python bench/policy_accept.py --policy bans,rbl,tarpit,access --rounds 5
    python bench/policy_accept.py --modes persistent,per-connection --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "bench"), str(ROOT)]

from smtp_load import MODES, LoadConfig, run_load  # noqa: E402

from mailmax.core.hooks import DEFAULT_ENABLED  # noqa: E402
from mailmax.testing import TestServer, start_server  # noqa: E402
from tests.fixtures.dns import dns_server  # noqa: E402

#: The block list the rbl plugin asks; 127.0.0.2 is listed, the load's 127.0.0.1 is not.
ZONES = {
    "bl.test": {
        "bl.test": [("A", "127.0.0.1")],
        "2.0.0.127.bl.test": [("A", "127.0.0.2"), ("TXT", "listed for the benchmark")],
    }
}
#: Settings of the policy plugins for the benchmark (the others run with their defaults).
POLICY_SETTINGS = {"rbl": {"zones": ["bl.test"]}}


def variants(policy: list[str]) -> dict[str, list[str]]:
    """The plugin list of each server: none, the default set, the default set + ``policy``."""
    default = list(DEFAULT_ENABLED)
    return {
        "none": [],
        "default": default,
        "policy": [*default, *(name for name in policy if name not in default)],
    }


def measure(server: TestServer, concurrency: int, mode: str, seconds: float) -> dict:
    """One load run against ``server``; its rate, latencies and errors."""
    result = run_load(
        LoadConfig(
            port=server.ports["smtp"],
            concurrency=concurrency,
            size=4096,
            mode=mode,
            seconds=seconds,
            recipient="alice@example.test",
        )
    )
    summary = result.summary()
    return {
        "msg_per_s": summary["msg_per_s"],
        "p50_ms": summary["latency_ms"]["p50"],
        "p99_ms": summary["latency_ms"]["p99"],
        "errors": summary["errors"],
        "error_samples": summary["error_samples"],
    }


def run(args: argparse.Namespace) -> dict:
    """Start the servers, measure the rounds, stop everything; the raw runs and medians."""
    plugin_lists = variants(args.policy)
    levels = [int(c) for c in args.concurrency.split(",")]
    runs: list[dict] = []
    with dns_server(ZONES) as dns, tempfile.TemporaryDirectory(prefix="mailmax-policy-") as tmp:
        servers: dict[str, TestServer] = {}
        try:
            for name, plugins in plugin_lists.items():
                servers[name] = start_server(
                    Path(tmp) / name,
                    plugins=plugins,
                    settings={k: v for k, v in POLICY_SETTINGS.items() if k in plugins},
                    sections={"queue": {"dns_servers": [f"{dns[0]}:{dns[1]}"]}},
                )
            for server in servers.values():
                for mode in args.modes:
                    measure(server, 5, mode, 0.5)  # warm-up (and the rbl cache)
            for index in range(args.rounds):
                for mode in args.modes:
                    for concurrency in levels:
                        for name, server in servers.items():
                            row = measure(server, concurrency, mode, args.seconds)
                            runs.append(
                                {"round": index, "variant": name, "mode": mode,
                                 "concurrency": concurrency, **row}
                            )  # fmt: skip
        finally:
            for server in servers.values():
                server.stop()
    return {"plugins": plugin_lists, "runs": runs, "cells": medians(runs)}


def medians(runs: list[dict]) -> list[dict]:
    """Per mode and level: each variant's median rate and p50, and the ratios."""
    cells = []
    for key in dict.fromkeys((r["mode"], r["concurrency"]) for r in runs):
        rates, p50s, errors = {}, {}, {}
        for name in ("none", "default", "policy"):
            mine = [
                r for r in runs if (r["mode"], r["concurrency"]) == key and r["variant"] == name
            ]
            rates[name] = statistics.median(r["msg_per_s"] for r in mine)
            p50s[name] = statistics.median(r["p50_ms"] or 0 for r in mine)
            errors[name] = sum(r["errors"] for r in mine)
        cells.append(
            {
                "mode": key[0],
                "concurrency": key[1],
                "msg_per_s": rates,
                "p50_ms": p50s,
                "errors": errors,
                "policy/default": round(rates["policy"] / rates["default"], 3),
                "default/none": round(rates["default"] / rates["none"], 3),
            }
        )
    return cells


def main() -> int:
    """Run the benchmark and print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per cell and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="10,50")
    parser.add_argument(
        "--modes", default="persistent", type=lambda s: s.split(","), help=", ".join(MODES)
    )
    parser.add_argument(
        "--policy",
        default="bans,rbl,tarpit",
        type=lambda s: [name for name in s.split(",") if name],
        help="plugins the policy variant adds to the default set (e.g. bans,rbl,tarpit,access)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    unknown = [mode for mode in args.modes if mode not in MODES]
    if unknown:
        parser.error(f"unknown mode {unknown[0]!r}; use {', '.join(MODES)}")
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for name, plugins in report["plugins"].items():
        print(f"{name:8} {', '.join(plugins) or '(no plugins)'}")
    print(f"\n{'4 KiB':22} {'none':>8} {'default':>8} {'policy':>8}   "
          f"{'policy/default':>14} {'default/none':>12} {'errors':>6}")  # fmt: skip
    for cell in report["cells"]:
        rates = cell["msg_per_s"]
        label = f"C={cell['concurrency']} {cell['mode']}"
        print(
            f"{label:22} {rates['none']:>8.1f} {rates['default']:>8.1f} {rates['policy']:>8.1f}"
            f"   {cell['policy/default']:>14.3f} {cell['default/none']:>12.3f}"
            f" {sum(cell['errors'].values()):>6}"
        )
    print(f"\nmsg/s: medians of {args.rounds} interleaved rounds of {args.seconds:g} s per cell")
    return 0


if __name__ == "__main__":
    sys.exit(main())
