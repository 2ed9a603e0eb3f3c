#!/usr/bin/env python3
"""The llama.cpp anchor for hearth-llm-bench: the same GGUF, the same prompt
text and length, the same thread count, greedy generation; prints one JSON
line. Needs llama-cpp-python (PyPI); run beside hearth-llm-bench in the same
run:

    python3 inference/bench/llama_cpp_bench.py models/SmolLM2-135M-Instruct.Q4_1.gguf 145 20 2
"""
import json
import sys
import time

import numpy as np
from llama_cpp import Llama


def main():
    model, n_prompt, n_gen, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    reps = 3
    llm = Llama(model_path=model, n_ctx=512, n_threads=threads, n_threads_batch=threads,
                n_batch=512, verbose=False)
    text = "The appliance turns plain-language requests into signed playbooks. " * 40
    ids = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)[:n_prompt]
    best_p, best_g = float("inf"), float("inf")
    for _ in range(reps):
        llm.reset()
        llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
        t = time.perf_counter()
        llm.eval(ids)
        p = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(n_gen):
            nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            llm.eval([nxt])
        g = time.perf_counter() - t
        best_p, best_g = min(best_p, p), min(best_g, g)
    print(json.dumps({"engine": "llama.cpp", "weights": "keep", "threads": threads,
                      "prompt_tokens": len(ids), "prompt_tok_s": round(len(ids) / best_p, 1),
                      "gen_tokens": n_gen, "gen_tok_s": round(n_gen / best_g, 1),
                      "total_s": round(best_p + best_g, 2)}))


if __name__ == "__main__":
    main()
