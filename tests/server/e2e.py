#!/usr/bin/env python3
"""End-to-end tests of `moeq serve` on tiny-m2, driven by the official `openai` Python client.

    python3 tests/server/e2e.py --moeq build/moeq --model models/tiny-m2

Starts three servers (features; API key; a 1-slot, 1-queue server for overload, disconnects and
shutdown), prints one line per check, and exits 0 when all pass, 1 when any fails (with the
server logs), 3 when the `openai` package is missing. tests/test_server_e2e.cpp runs it in ctest.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import socket
import sys
import time
import traceback
from urllib.parse import urlparse

try:
    import openai
except ImportError as e:  # CI installs scripts/requirements-test.txt
    print("missing Python package (%s): pip install -r scripts/requirements-test.txt" % e)
    sys.exit(3)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from moeq_server import MoeqServer  # noqa: E402

MODEL = "tiny-m2"
# What tiny-m2's chat template renders for one user message "Hi" (tests/test_server_request.cpp
# checks the same string), for comparing chat output with the raw completion of the same prompt.
RENDERED_HI = "]~!b[]~b]system\nYou are a helpful assistant.[e~[\n]~b]user\nHi[e~[\n]~b]ai\n<think>\n"
PROMPTS = [
    "Write a Python function that reverses a string.",
    "What is a hash table?",
    "Explain the difference between a list and a tuple.",
    "def fibonacci(n):",
    "The C standard library header stdio.h declares",
    "Summarise the rules of chess in one sentence.",
]


class Checks:
    def __init__(self):
        self.failures = []
        self.n = 0

    def check(self, name, cond, detail=""):
        self.n += 1
        if cond:
            print("  ok    %s" % name)
        else:
            print("  FAIL  %s %s" % (name, detail))
            self.failures.append(name)
        return cond

    def run(self, name, fn, *args):
        print("%s:" % name)
        t0 = time.time()
        try:
            fn(self, *args)
        except Exception:  # a crash of a scenario is a failure, with its traceback
            self.failures.append(name)
            print("  FAIL  %s raised:\n%s" % (name, traceback.format_exc()))
        print("  (%.1f s)" % (time.time() - t0))


def client(server, key="none"):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=120)


class Reply:
    def __init__(self, status, headers, body):
        self.status_code, self.headers, self.content = status, headers, body
        self.text = body.decode(errors="replace")

    def json(self):
        return json.loads(self.content)


def http_request(server, method, path, body=None, headers=None):
    """A plain HTTP request with the standard library (independent of the openai client's transport)."""
    u = urlparse(server.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
    finally:
        conn.close()


def metric(server, name):
    text = http_request(server, "GET", "/metrics").text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise KeyError(name)


def wait_for(fn, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if fn():
            return True
        time.sleep(0.05)
    return False


def chat_text(c, prompt, **kw):
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}], **kw)
    m = r.choices[0].message
    return (getattr(m, "reasoning_content", None) or "") + "|" + (m.content or ""), r


def stream_chat_text(c, prompt, **kw):
    reasoning, content, finish, usage = "", "", None, None
    for chunk in c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt}],
                                           stream=True, stream_options={"include_usage": True}, **kw):
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            reasoning += getattr(ch.delta, "reasoning_content", None) or ""
            content += ch.delta.content or ""
            finish = ch.finish_reason or finish
    return reasoning + "|" + content, finish, usage


def raw_socket(server):
    u = urlparse(server.url)
    return socket.create_connection((u.hostname, u.port), timeout=30)


def raw_post(server, path, body, extra_headers=""):
    s = raw_socket(server)
    data = json.dumps(body).encode()
    s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
               % (path, len(data), extra_headers)).encode() + data)
    return s


def read_head(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        part = s.recv(4096)
        if not part:
            break
        buf += part
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return status, headers, rest


def read_body(s, head):
    """The Content-Length body of a response whose head read_head() returned."""
    _, headers, data = head
    n = int(headers.get("content-length", "0"))
    while len(data) < n:
        part = s.recv(65536)
        if not part:
            break
        data += part
    return data[:n]


# ---- server A: the features ------------------------------------------------------------------------

def t_models(t, srv):
    models = client(srv).models.list()
    t.check("models.list names the served model", [m.id for m in models.data] == [MODEL], models)
    t.check("/health is 200", http_request(srv, "GET", "/health").status_code == 200)


def t_chat(t, srv):
    c = client(srv)
    text, r = chat_text(c, "Hi", max_tokens=16, temperature=0)
    u = r.usage
    t.check("chat: object and role", r.object == "chat.completion" and r.choices[0].message.role == "assistant")
    t.check("chat: usage adds up", u.completion_tokens <= 16 and u.prompt_tokens > 0
            and u.total_tokens == u.prompt_tokens + u.completion_tokens, u)
    t.check("chat: finish_reason", r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason)
    t.check("chat: reasoning_content present with --reasoning-parser",
            hasattr(r.choices[0].message, "reasoning_content"), r.choices[0].message)
    stext, finish, usage = stream_chat_text(c, "Hi", max_tokens=16, temperature=0)
    t.check("chat stream: deltas add up to the non-stream message", stext == text, (stext, text))
    t.check("chat stream: finish_reason and usage chunk", finish == r.choices[0].finish_reason
            and usage is not None and usage.completion_tokens == u.completion_tokens, (finish, usage))
    # The reasoning split against the raw completion of the same rendered prompt.
    raw = c.completions.create(model=MODEL, prompt=RENDERED_HI, max_tokens=16, temperature=0).choices[0].text
    reasoning, _, content = text.partition("|")
    want = raw.split("</think>", 1) if "</think>" in raw else [raw, ""]
    t.check("reasoning_content is the text before </think>, content the rest", [reasoning, content] == want,
            (reasoning, content, raw))
    lp = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=8,
                                   temperature=0, logprobs=True, top_logprobs=2)
    entries = lp.choices[0].logprobs.content
    t.check("chat logprobs: one entry per token, two alternatives each",
            len(entries) == lp.usage.completion_tokens and all(len(e.top_logprobs) == 2 for e in entries)
            and all(e.logprob <= 0 for e in entries), lp.choices[0].logprobs)


TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]


def t_tools(t, srv):
    c = client(srv)
    plain = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Weather in Paris?"}],
                                      max_tokens=4, temperature=0)
    r = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Weather in Paris?"}],
                                  tools=TOOLS, max_tokens=4, temperature=0)
    t.check("tools are rendered into the prompt", r.usage.prompt_tokens > plain.usage.prompt_tokens + 20,
            (r.usage.prompt_tokens, plain.usage.prompt_tokens))
    # A tool round trip as clients send it: the assistant's call with JSON-string arguments, then the result.
    history = [{"role": "user", "content": "Weather in Paris?"},
               {"role": "assistant", "content": None, "tool_calls": [
                   {"id": "call_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
               {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]
    r2 = c.chat.completions.create(model=MODEL, messages=history, tools=TOOLS, max_tokens=4, temperature=0)
    t.check("a tool-result turn renders and generates", r2.usage.prompt_tokens > r.usage.prompt_tokens, r2.usage)
    expect_error(t, "a tool message without a call: 400 from the template",
                 lambda: c.chat.completions.create(model=MODEL, messages=[{"role": "tool", "content": "x"}]), 400)


def t_completions(t, srv):
    c = client(srv)
    r = c.completions.create(model=MODEL, prompt="def fibonacci(n):", max_tokens=16, temperature=0, logprobs=2)
    t.check("completions: text_completion with usage", r.object == "text_completion" and r.usage.completion_tokens > 0)
    lp = r.choices[0].logprobs
    t.check("completions: logprobs lists", len(lp.tokens) == r.usage.completion_tokens
            and len(lp.top_logprobs[0]) == 2, lp)
    text = ""
    for chunk in c.completions.create(model=MODEL, prompt="def fibonacci(n):", max_tokens=16, temperature=0, stream=True):
        text += chunk.choices[0].text if chunk.choices else ""
    t.check("completions stream equals non-stream", text == r.choices[0].text, (text, r.choices[0].text))
    ids = c.completions.create(model=MODEL, prompt=[100, 200, 300], max_tokens=4, temperature=0)
    t.check("completions: token-id prompt", ids.usage.prompt_tokens == 3)
    full = r.choices[0].text
    if "\n" in full.strip("\n"):
        stop = "\n"
        cut = c.completions.create(model=MODEL, prompt="def fibonacci(n):", max_tokens=16, temperature=0, stop=[stop])
        t.check("stop string ends the text before it", cut.choices[0].text == full[:full.index(stop)]
                and cut.choices[0].finish_reason == "stop", (cut.choices[0].text, full))
    a = c.completions.create(model=MODEL, prompt="The", max_tokens=12, temperature=1.0, seed=7).choices[0].text
    b = c.completions.create(model=MODEL, prompt="The", max_tokens=12, temperature=1.0, seed=7).choices[0].text
    t.check("the same seed gives the same sample", a == b, (a, b))


def expect_error(t, name, fn, status, param=None):
    try:
        fn()
    except openai.APIStatusError as e:
        err = e.body if isinstance(e.body, dict) else {}
        ok = e.status_code == status and {"message", "type", "param", "code"} <= set(err)
        if param is not None:
            ok = ok and err.get("param") == param
        return t.check(name, ok, (e.status_code, e.body))
    return t.check(name, False, "no error")


def t_errors(t, srv):
    c = client(srv)
    msgs = [{"role": "user", "content": "Hi"}]
    r = http_request(srv, "POST", "/v1/chat/completions", b"{not json", {"Content-Type": "application/json"})
    body = r.json()
    t.check("malformed JSON: 400 with an OpenAI error object", r.status_code == 400
            and set(body["error"]) == {"message", "type", "param", "code"}, r.text)
    expect_error(t, "unknown model: 404", lambda: c.chat.completions.create(model="gpt-4", messages=msgs), 404, "model")
    expect_error(t, "temperature -1: 400", lambda: c.chat.completions.create(model=MODEL, messages=msgs, temperature=-1),
                 400, "temperature")
    expect_error(t, "top_p 2: 400", lambda: c.chat.completions.create(model=MODEL, messages=msgs, top_p=2), 400, "top_p")
    expect_error(t, "n 2: 400", lambda: c.chat.completions.create(model=MODEL, messages=msgs, n=2), 400, "n")
    expect_error(t, "max_tokens 0: 400", lambda: c.completions.create(model=MODEL, prompt="x", max_tokens=0), 400,
                 "max_tokens")
    expect_error(t, "empty messages: 400", lambda: c.chat.completions.create(model=MODEL, messages=[]), 400, "messages")
    long_prompt = "hello " * 700
    try:
        c.completions.create(model=MODEL, prompt=long_prompt, max_tokens=4)
        t.check("prompt over the context limit: 400", False, "accepted")
    except openai.BadRequestError as e:
        t.check("prompt over the context limit: 400 naming the limit", "maximum context length is 512" in str(e), e)
    expect_error(t, "prompt + max_tokens over the limit: 400",
                 lambda: c.completions.create(model=MODEL, prompt="x", max_tokens=600), 400, "max_tokens")
    r = http_request(srv, "GET", "/v1/nothing")
    t.check("unknown path: 404 error object", r.status_code == 404 and "error" in r.json())
    r = http_request(srv, "GET", "/v1/chat/completions")
    t.check("wrong method: 405 with Allow", r.status_code == 405 and r.headers.get("allow") == "POST")
    r = http_request(srv, "POST", "/v1/completions", b"x" * 70000)
    t.check("body over --max-body-bytes: 413", r.status_code == 413, r.status_code)
    r = http_request(srv, "POST", "/v1/completions", b"[" * 5000)
    t.check("deeply nested JSON: 400", r.status_code == 400)
    t.check("the server is still healthy", http_request(srv, "GET", "/health").status_code == 200)


def t_concurrency(t, srv):
    c = client(srv)
    # Each prompt alone first, then all at once (6 streams on 4 slots: batching, queueing, slot reuse).
    alone = [chat_text(c, p, max_tokens=24, temperature=0)[0] for p in PROMPTS]
    with concurrent.futures.ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda p: stream_chat_text(c, p, max_tokens=24, temperature=0), PROMPTS))
    t.check("concurrent streams all finish", all(f in ("stop", "length") for _, f, _ in together),
            [f for _, f, _ in together])
    for i, (a, (b, _, _)) in enumerate(zip(alone, together)):
        t.check("greedy output batched == alone (prompt %d)" % i, a == b, (a, b))
    seeds = [c.completions.create(model=MODEL, prompt=p, max_tokens=12, temperature=1.0, seed=i).choices[0].text
             for i, p in enumerate(PROMPTS[:3])]
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        batched = list(pool.map(lambda ip: c.completions.create(model=MODEL, prompt=ip[1], max_tokens=12, temperature=1.0,
                                                                seed=ip[0]).choices[0].text, enumerate(PROMPTS[:3])))
    t.check("seeded samples batched == alone", seeds == batched, (seeds, batched))


# ---- server B: API key -----------------------------------------------------------------------------

def t_api_key(t, srv):
    expect_error(t, "wrong API key: 401", lambda: client(srv, "wrong").models.list(), 401)
    r = http_request(srv, "GET", "/v1/models")
    t.check("missing API key: 401", r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", r.text)
    t.check("right API key: 200", [m.id for m in client(srv, "sekrit").models.list().data] == [MODEL])
    t.check("/health needs no key", http_request(srv, "GET", "/health").status_code == 200)
    t.check("/metrics needs no key", http_request(srv, "GET", "/metrics").status_code == 200)
    text, _ = chat_text(client(srv, "sekrit"), "Hi", max_tokens=8, temperature=0)
    t.check("minimax_append_think keeps <think> inline in content", text.startswith("|<think>"), text)
    expect_error(t, "tools without --enable-auto-tool-choice: 400", lambda: client(srv, "sekrit").chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Hi"}], tools=TOOLS), 400, "tool_choice")


# ---- server C: one slot, one queue place -----------------------------------------------------------

LONG = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 3000, "ignore_eos": True, "temperature": 0}


def t_overload_and_cancel(t, srv):
    cancelled0 = metric(srv, "moeq_requests_cancelled_total")
    socks = [raw_post(srv, "/v1/completions", dict(LONG, stream=True)) for _ in range(4)]
    heads = [read_head(s) for s in socks]
    statuses = sorted(h[0] for h in heads)
    t.check("1 slot + 1 queue place: two accepted, the rest 503", statuses == [200, 200, 503, 503], statuses)
    refused = [h for h in heads if h[0] == 503]
    t.check("503 carries Retry-After", all("retry-after" in h[1] for h in refused), refused)
    bodies = [read_body(s, h) for s, h in zip(socks, heads) if h[0] == 503]
    t.check("503 body is an OpenAI error", all(json.loads(b)["error"]["code"] == "server_overloaded" for b in bodies),
            bodies)
    for s in socks:
        s.close()
    t.check("closing the streams cancels both", wait_for(lambda: metric(srv, "moeq_requests_cancelled_total")
                                                         >= cancelled0 + 2 and metric(srv, "moeq_num_requests_running") == 0
                                                         and metric(srv, "moeq_num_requests_waiting") == 0))
    # A disconnect while a non-stream request is generating cancels it too.
    cancelled1 = metric(srv, "moeq_requests_cancelled_total")
    s = raw_post(srv, "/v1/completions", LONG)
    t.check("non-stream request is running", wait_for(lambda: metric(srv, "moeq_num_requests_running") == 1))
    s.close()
    t.check("disconnect cancels a non-stream request", wait_for(
        lambda: metric(srv, "moeq_requests_cancelled_total") >= cancelled1 + 1 and metric(srv, "moeq_num_requests_running") == 0))
    r = client(srv).completions.create(model=MODEL, prompt="Hi", max_tokens=4, temperature=0)
    t.check("the slot is free again", r.usage.completion_tokens >= 1)
    t.check("499s are counted", 'status="499"' in http_request(srv, "GET", "/metrics").text)


def t_shutdown(t, srv):
    s = raw_post(srv, "/v1/completions", dict(LONG, stream=True))
    status, _, rest = read_head(s)
    t.check("a stream is running", status == 200)
    code = srv.stop()
    t.check("SIGINT: the server exits 0 while streaming", code == 0, code)
    data = rest
    s.settimeout(5)
    try:
        while True:
            part = s.recv(65536)
            if not part:
                break
            data += part
    except OSError:
        pass
    t.check("the running stream ends with an error event and [DONE]", b"shutting down" in data and b"[DONE]" in data,
            data[-300:])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--moeq", required=True)
    ap.add_argument("--model", required=True)
    a = ap.parse_args()
    t = Checks()
    servers = []
    t0 = time.time()
    try:
        common = ["--served-model-name", MODEL, "--no-access-log"]
        a_srv = MoeqServer(a.moeq, a.model, *common, "--max-num-seqs", "4", "--max-model-len", "512",
                           "--max-body-bytes", "65536", "--reasoning-parser", "minimax", "--tool-call-parser",
                           "minimax_m2", "--enable-auto-tool-choice")
        servers.append(a_srv)
        t.run("models", t_models, a_srv)
        t.run("chat", t_chat, a_srv)
        t.run("tools", t_tools, a_srv)
        t.run("completions", t_completions, a_srv)
        t.run("errors", t_errors, a_srv)
        t.run("concurrency", t_concurrency, a_srv)
        t.check("server A exits 0 on SIGINT", a_srv.stop() == 0)

        b_srv = MoeqServer(a.moeq, a.model, *common, "--api-key", "sekrit", "--max-model-len", "512",
                           "--reasoning-parser", "minimax_m2_append_think")
        servers.append(b_srv)
        t.run("api key", t_api_key, b_srv)
        t.check("server B exits 0 on SIGINT", b_srv.stop() == 0)

        c_srv = MoeqServer(a.moeq, a.model, *common, "--max-num-seqs", "1", "--max-queue", "1",
                           "--max-model-len", "4096")
        servers.append(c_srv)
        t.run("overload and disconnects", t_overload_and_cancel, c_srv)
        t.run("shutdown", t_shutdown, c_srv)
    except Exception:
        t.failures.append("setup")
        print(traceback.format_exc())
    finally:
        for s in servers:
            s.kill()
    print("%d checks, %d failed, %.1f s" % (t.n, len(t.failures), time.time() - t0))
    if t.failures:
        print("FAILED: " + ", ".join(t.failures))
        for s in servers:
            print("---- log of %s\n%s" % (" ".join(s.cmd), s.log_text()[-6000:]))
    for s in servers:
        s.cleanup()
    return 1 if t.failures else 0


if __name__ == "__main__":
    sys.exit(main())
