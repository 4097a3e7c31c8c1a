"""A stand-in definition update: appends a line to a log, then copies a signature file into place.

Usage: ``drop_signature.py SOURCE DATABASE_FOLDER LOG [--fail]``.
"""

import shutil
import sys

source, folder, log = sys.argv[1:4]
with open(log, "a") as out:
    out.write("run\n")
if "--fail" in sys.argv:
    print("mirror unreachable", file=sys.stderr)
    sys.exit(2)
shutil.copy(source, folder)
print("1 new signature")
