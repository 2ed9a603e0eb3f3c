#!/usr/bin/env python3
"""Cases for the heads' fit to their own templates (docs/perf.md).

By default: every template of the playbooks whose parameters come in
same-type pairs (net.allow and net.revoke: from and to; dns.add_alias: name
and target), filled once with two different values of the pair in a random
order. With --all: every request template (utterances and statements) of
every playbook, each slot filled with a value of its type and the declared
defaults expected. Written as an evaluation case file on stdout. These are
training templates: the figure says how well the heads learnt what they
were taught, not how they generalize (that is the evaluation sets' job).
Not an evaluation set, and never read by training.

    inference/bench/template-fit.py [--all] [SEED] > /tmp/fit.jsonl
    hearth-intent-eval --models models --catalog catalog \
        --cases /tmp/fit.jsonl --report /tmp/fit.json
"""
import json
import random
import sys
import tomllib
from pathlib import Path

CATALOG = Path(__file__).resolve().parents[2] / "catalog"
DOMAINS = ["lan", "iot", "guest", "work"]
NAMES = ["media.home.arpa", "nas.lan", "printer.office.example",
         "cloud.house.example", "git.home.arpa", "srv1.internal"]
PAIRS = {"net.allow": ("from", "to"),
         "net.revoke": ("from", "to"),
         "dns.add_alias": ("name", "target")}

args = [a for a in sys.argv[1:] if a != "--all"]
every = "--all" in sys.argv[1:]
rng = random.Random(int(args[0]) if args else 11)


def values(params):
    """One value per slot: (text written, value expected or None)."""
    src, dst = rng.sample(DOMAINS, 2)
    name, target = rng.sample(NAMES, 2)
    kind = {p["name"]: p.get("type") for p in params}
    return {
        "from": (src, src), "to": (dst, dst),
        "name": (name, name), "target": (target, target),
        "port": ("8883", 8883), "protocol": ("tcp", "tcp"),
        "days": ("30 days", 30), "subnet": ("10.20.0.0/24", "10.20.0.0/24"),
        "address": ("192.168.1.77", "192.168.1.77"),
        "device": ("aa:bb:cc:dd:ee:0f", "aa:bb:cc:dd:ee:0f"),
        "domain": ("lab2", "lab2") if kind.get("domain") == "new-domain"
        else ("guest", "guest"),
        # Context, not a parameter (net.create_domain's templates).
        "purpose": ("cameras", None),
    }


for path in sorted(CATALOG.glob("*.toml")):
    playbook = path.stem
    if not every and playbook not in PAIRS:
        continue
    spec = tomllib.loads(path.read_text())
    params = spec.get("params", [])
    for kind in ("utterances", "statements"):
        for template in spec.get("language", {}).get(kind, []):
            if playbook in PAIRS and not every:
                a, b = PAIRS[playbook]
                if "{%s}" % a not in template or "{%s}" % b not in template:
                    continue
            text, expect = template, {}
            for slot, (written, value) in values(params).items():
                if "{%s}" % slot in text:
                    text = text.replace("{%s}" % slot, written)
                    if value is not None:
                        expect[slot] = value
            if "{" in text:
                continue
            for p in params:
                if p["name"] not in expect and "default" in p:
                    if p.get("default_if") in (None, *expect):
                        expect[p["name"]] = p["default"]
            print(json.dumps({"text": text,
                              "expect": {"playbook": playbook, "params": expect},
                              "category": f"{playbook} {kind}"}))
