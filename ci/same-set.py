#!/usr/bin/env python3
"""Print the mmdebstrap command that makes a node's package layer by hand: its
base's suite and mirror (images/<base>.yml) and the same package set (the base's
packages and the plan's), to a plain tar. ci/bench.sh compares build-image with it.

usage: same-set.py PLAN_JSON REPO_ROOT OUT_TAR
"""
import json
import re
import shlex
import sys

plan = json.loads(sys.argv[1])
root, out = sys.argv[2], sys.argv[3]
text = open(f"{root}/images/{plan['image']['name']}.yml").read()


def field(key):
    return re.search(rf"^{key}: *(\S+)", text, re.M).group(1)


# The base list: the `base:` block's items, before `pg_versions`.
base_block = text.split("\nbase:", 1)[1].split("\npg_versions", 1)[0]
base = re.findall(r"^  - (\S+)", base_block, re.M)
packages = sorted(set(plan["packages"]) | set(base))
# The node's other repositories signed by Debian's keyring (updates, security);
# the bench runs on the built-in inventories, which use no other.
extra = [
    " ".join(["deb", r["uri"], r["suite"], *r["components"]])
    for r in plan["image"]["repositories"]
    if r.get("key") == "debian" and r["suite"] != field("suite")
]
cmd = [
    "mmdebstrap", "--mode=auto", "--variant=apt", "--format=tar",
    f"--architectures={field('architecture')}",
    "--include=" + ",".join(packages),
    field("suite"), out, field("mirror"), *extra,
]
print(" ".join(shlex.quote(a) for a in cmd))
