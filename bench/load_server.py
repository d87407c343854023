#!/usr/bin/env python3
"""Load test for `moeq serve` (not a unit test): N concurrent streaming chat clients for T seconds.

    build/moeq serve -m models/tiny-m2 --max-num-seqs 32 &
    python3 bench/load_server.py --url http://127.0.0.1:8000 --clients 32 --duration 60

Each client loops: one streaming /v1/chat/completions request (stream_options.include_usage) with a
prompt from a small rotating set, reading every chunk, then the next. Reports requests completed,
errors (anything but a clean stream ending in finish_reason + usage + [DONE]; must be 0), generated
tokens per second (from the usage chunks), time to first token and request latency percentiles, and
the server's resident memory (VmRSS from /proc/<pid>/status) at the start and the end. The server
pid is found from /proc when --pid is not given (the one process whose command line is
`moeq serve ...`). Needs the `openai` package (scripts/requirements-test.txt).
"""
import argparse
import json
import os
import statistics
import sys
import threading
import time

import openai

PROMPTS = [
    "Write a Python function that reverses a string.",
    "What is a hash table and when would you use one?",
    "Explain the difference between a list and a tuple in Python.",
    "Describe how a C program is compiled and linked.",
    "What does the with statement do in Python?",
    "Summarise what a dictionary definition should contain.",
    "How do you read a file line by line in Python?",
    "Explain recursion with an example.",
]


def find_server_pid():
    found = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[0].endswith(b"moeq") and argv[1] == b"serve":
            found.append(int(d))
    return found[0] if len(found) == 1 else None


def rss_mib(pid):
    if pid is None:
        return None
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return None


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.errors = []
        self.tokens = 0
        self.ttft = []
        self.latency = []

    def ok(self, tokens, ttft, latency):
        with self.lock:
            self.requests += 1
            self.tokens += tokens
            self.ttft.append(ttft)
            self.latency.append(latency)

    def error(self, what):
        with self.lock:
            self.errors.append(what)


def worker(i, args, stats, stop_at):
    client = openai.OpenAI(base_url=args.url + "/v1", api_key=args.api_key, max_retries=0, timeout=600)
    n = i
    while time.time() < stop_at:
        prompt = PROMPTS[n % len(PROMPTS)]
        n += args.clients
        t0 = time.time()
        ttft, finish, usage = None, None, None
        try:
            stream = client.chat.completions.create(
                model=args.model, messages=[{"role": "user", "content": prompt}], max_tokens=args.max_tokens,
                temperature=args.temperature, stream=True, stream_options={"include_usage": True})
            for chunk in stream:
                if chunk.usage:
                    usage = chunk.usage
                for ch in chunk.choices:
                    if ttft is None and (ch.delta.content or getattr(ch.delta, "reasoning_content", None)):
                        ttft = time.time() - t0
                    finish = ch.finish_reason or finish
            if finish is None or usage is None:
                stats.error("stream ended without finish_reason/usage")
                continue
            stats.ok(usage.completion_tokens, ttft if ttft is not None else time.time() - t0, time.time() - t0)
        except Exception as e:  # every failure counts as an error, with its message
            stats.error("%s: %s" % (type(e).__name__, str(e)[:200]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--model", default=None, help="model name (default: the first of /v1/models)")
    ap.add_argument("--api-key", default=os.environ.get("MOEQ_API_KEY", "none"))
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--pid", type=int, default=None, help="server pid for RSS (default: found in /proc)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON too")
    args = ap.parse_args()

    if args.model is None:
        args.model = openai.OpenAI(base_url=args.url + "/v1", api_key=args.api_key).models.list().data[0].id
    pid = args.pid if args.pid is not None else find_server_pid()
    rss_start = rss_mib(pid)
    stats = Stats()
    t0 = time.time()
    stop_at = t0 + args.duration
    threads = [threading.Thread(target=worker, args=(i, args, stats, stop_at)) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - t0  # includes finishing the requests in flight at the deadline
    rss_end = rss_mib(pid)

    res = {
        "url": args.url, "model": args.model, "clients": args.clients, "duration_s": round(elapsed, 1),
        "max_tokens": args.max_tokens, "temperature": args.temperature,
        "requests": stats.requests, "errors": len(stats.errors),
        "generated_tokens": stats.tokens, "tokens_per_s": round(stats.tokens / elapsed, 1),
        "requests_per_s": round(stats.requests / elapsed, 2),
        "ttft_p50_s": round(percentile(stats.ttft, 50), 3), "ttft_p95_s": round(percentile(stats.ttft, 95), 3),
        "latency_p50_s": round(percentile(stats.latency, 50), 3),
        "latency_p95_s": round(percentile(stats.latency, 95), 3),
        "server_pid": pid,
        "server_rss_start_mib": None if rss_start is None else round(rss_start, 1),
        "server_rss_end_mib": None if rss_end is None else round(rss_end, 1),
    }
    print("clients %d, %.1f s: %d requests, %d errors, %d tokens, %.1f tok/s, %.2f req/s" % (
        args.clients, elapsed, stats.requests, len(stats.errors), stats.tokens, res["tokens_per_s"], res["requests_per_s"]))
    print("TTFT p50 %.3f s p95 %.3f s; latency p50 %.3f s p95 %.3f s" % (
        res["ttft_p50_s"], res["ttft_p95_s"], res["latency_p50_s"], res["latency_p95_s"]))
    print("server pid %s RSS: start %s MiB, end %s MiB" % (pid, res["server_rss_start_mib"], res["server_rss_end_mib"]))
    for e in sorted(set(stats.errors))[:10]:
        print("error:", e)
    if args.json:
        print(json.dumps(res, indent=1))
    return 1 if stats.errors else 0


if __name__ == "__main__":
    sys.exit(main())
