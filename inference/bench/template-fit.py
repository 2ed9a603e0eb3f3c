#!/usr/bin/env python3
"""Cases for the heads' fit to their own templates (docs/perf.md).

Every template of the playbooks whose parameters come in same-type pairs
(net.allow and net.revoke: from and to; dns.add_alias: name and target),
filled once with two different values of the pair in a random order, written
as an evaluation case file. These are training templates: the figure says
how well the heads learnt the roles they were taught, not how they
generalize (that is the evaluation sets' job). Not an evaluation set, and
never read by training.

    inference/bench/template-fit.py > /tmp/fit.jsonl
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
PAIRS = {"net.allow": ("from", "to", DOMAINS),
         "net.revoke": ("from", "to", DOMAINS),
         "dns.add_alias": ("name", "target", NAMES)}

rng = random.Random(int(sys.argv[1]) if len(sys.argv) > 1 else 11)
for playbook, (a, b, pool) in PAIRS.items():
    lang = tomllib.loads((CATALOG / f"{playbook}.toml").read_text())["language"]
    for kind in ("utterances", "statements"):
        for template in lang.get(kind, []):
            if "{%s}" % a not in template or "{%s}" % b not in template:
                continue
            x, y = rng.sample(pool, 2)
            params = {a: x, b: y}
            text = template.replace("{%s}" % a, x).replace("{%s}" % b, y)
            if "{port}" in text:
                text = text.replace("{port}", "8883")
                params["port"] = 8883
                params["protocol"] = "tcp"
            if "{protocol}" in text:
                text = text.replace("{protocol}", "tcp")
                params["protocol"] = "tcp"
            if "{" in text:
                continue
            print(json.dumps({"text": text,
                              "expect": {"playbook": playbook, "params": params},
                              "category": f"{playbook} {kind}"}))
