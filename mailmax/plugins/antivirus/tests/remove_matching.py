"""A stand-in command-line scanner: removes the files of a folder whose names match a pattern.

Usage: ``remove_matching.py FOLDER PATTERN [--exit N] [--record FILE] [--sleep S]``.
"""

import argparse
import fnmatch
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("target")
parser.add_argument("pattern")
parser.add_argument("--exit", type=int, default=0)
parser.add_argument("--record")
parser.add_argument("--sleep", type=float, default=0.0)
args = parser.parse_args()
if args.record:
    if os.path.isdir(args.target):
        seen = sorted(os.listdir(args.target))
    else:
        with open(args.target, "rb") as message:
            seen = [message.read(200).decode("latin-1")]
    with open(args.record, "w") as out:
        out.write("\n".join([os.getcwd(), args.target, *seen]))
time.sleep(args.sleep)
if os.path.isdir(args.target):
    for name in os.listdir(args.target):
        if fnmatch.fnmatch(name, args.pattern):
            os.remove(os.path.join(args.target, name))
            print(f"{name}: removed")
print("scanner output for the log", file=sys.stderr)
sys.exit(args.exit)
