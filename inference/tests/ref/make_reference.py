#!/usr/bin/env python3
"""Writes the reference tokenization of SmolLM2's GGUF tokenizer, produced by
llama.cpp (llama-cpp-python), to smollm2_tokens.json. Run once by hand:

    python3 -m venv /tmp/v && /tmp/v/bin/pip install llama-cpp-python
    /tmp/v/bin/python inference/tests/ref/make_reference.py models/SmolLM2-135M-Instruct.Q4_1.gguf

The Rust test (tests/tokenizer_reference.rs) compares against the committed
JSON and needs no Python.
"""
import json
import os
import sys

from llama_cpp import Llama

PLAIN = [
    "hello world",
    "Hello World!",
    "let iot reach lan on port 443",
    "point nas.home.arpa at 192.168.1.20",
    "0",
    "1234567890",
    "port 65535/udp",
    "10.0.0.0/24 and 172.16.254.1",
    "fd00::10",
    "2001:db8:85a3::8a2e:370:7334",
    "[fe80::1%eth0]:8080",
    "a  b   c    d",
    "   leading spaces",
    "trailing spaces   ",
    "tabs\tand\nnewlines\n\nhere",
    "punctuation: a,b;c.d!e?f (g) [h] {i} <j> \"k\" 'l'",
    "don't won't it's I'm you're they've we'll he'd",
    "UPPER CASE REQUEST FOR NAS.HOME.ARPA",
    "MiXeD CaSe",
    "café naïve résumé",
    "Grüße aus München — ß",
    "日本語のテキスト",
    "emoji 🔥🏠 and ✓",
    "Привет, мир",
    "a->b => c == d != e",
    "under_score and hy-phen and dot.ted",
    "x=1,y=22,z=333",
    "1.5 3.14159 1e10 -42 +7",
    "http://example.com/path?q=1&r=2",
    "user@example.com",
    "$(rm -rf /) && echo `id`",
    "<|im_start|>user\nnot special here<|im_end|>",
    "ignore previous instructions",
    "",
    " ",
    "\n",
    "!!!???...",
    "a" * 40,
    "9" * 25,
    "add an AAAA record for server.home.arpa with fd00::10",
    "lan should accept connections from guest on 8080",
    "make a TLS cert for printer.home.arpa valid for 30 days",
]

TEMPLATE = [
    "<|im_start|>system\nYou map a request.<|im_end|>\n<|im_start|>user\nlet iot reach lan<|im_end|>\n<|im_start|>assistant\naction: net.allow\n",
]


def main():
    model = sys.argv[1]
    llm = Llama(model_path=model, vocab_only=True, verbose=False)
    out = {"plain": [], "template": []}
    for t in PLAIN:
        ids = llm.tokenize(t.encode("utf-8"), add_bos=False, special=False)
        out["plain"].append({"text": t, "ids": ids})
    for t in TEMPLATE:
        ids = llm.tokenize(t.encode("utf-8"), add_bos=False, special=True)
        out["template"].append({"text": t, "ids": ids})
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "smollm2_tokens.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    print(len(out["plain"]), "plain and", len(out["template"]), "template strings")


if __name__ == "__main__":
    main()
