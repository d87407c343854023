#!/usr/bin/env python3
"""Reference renderings for moeq's chat-template parity test.

Renders every (template, conversation) pair of the corpus with Python's jinja2, set up the way
Hugging Face transformers renders chat templates (and so vLLM and SGLang):
ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True) with the loopcontrols
extension and a {% generation %} tag, tojson overridden by json.dumps(ensure_ascii=False, ...)
(no HTML escaping), and the globals raise_exception and strftime_now. The template sees messages,
tools (None when absent), documents=None, add_generation_prompt, the tokenizer's special tokens
and the conversation's "extra" variables.

Usage: render_reference.py OUT_DIR
Writes OUT_DIR/<template>__<conversation>.out (the rendering, UTF-8) or .err (the exception), and
OUT_DIR/pairs.txt listing the pair names. Exit code 3 when jinja2 is not installed.
"""
import datetime
import json
import os
import sys

try:
    import jinja2
    from jinja2 import nodes
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except ImportError:
    sys.stderr.write("render_reference.py: the Python package jinja2 is not installed; "
                     "install it with: pip install jinja2\n")
    sys.exit(3)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


class GenerationTag(Extension):
    """transformers' {% generation %} block: renders its body (as a call block) unchanged."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def token_text(v):
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and isinstance(v.get("content"), str):
        return v["content"]
    return None


def special_tokens(config):
    """transformers' special_tokens_map: the named special tokens that are set."""
    out = {}
    for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        t = token_text(config.get(key))
        if t is not None:
            out[key] = t
    extra = [token_text(t) for t in config.get("additional_special_tokens") or []]
    extra = [t for t in extra if t is not None]
    if extra:
        out["additional_special_tokens"] = extra
    return out


def templates():
    """(name, source, special tokens): MiniMax-M2's from the fixture model, then tests/jinja/templates."""
    model = os.path.join(ROOT, "models", "tiny-m2")
    with open(os.path.join(model, "chat_template.jinja"), encoding="utf-8", newline="") as f:
        src = f.read()
    with open(os.path.join(model, "tokenizer_config.json"), encoding="utf-8") as f:
        yield "minimax_m2", src, special_tokens(json.load(f))
    tdir = os.path.join(HERE, "templates")
    for fn in sorted(os.listdir(tdir)):
        if not fn.endswith(".jinja"):
            continue
        name = fn[: -len(".jinja")]
        with open(os.path.join(tdir, fn), encoding="utf-8", newline="") as f:
            src = f.read()
        tokens = {}
        tok_path = os.path.join(tdir, name + ".tokens.json")
        if os.path.exists(tok_path):
            with open(tok_path, encoding="utf-8") as f:
                tokens = special_tokens(json.load(f))
        yield name, src, tokens


def conversations():
    cdir = os.path.join(HERE, "conversations")
    for fn in sorted(os.listdir(cdir)):
        if fn.endswith(".json"):
            with open(os.path.join(cdir, fn), encoding="utf-8") as f:
                yield fn[: -len(".json")], json.load(f)


def main():
    if len(sys.argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    env = make_environment()
    convs = list(conversations())
    pairs = []
    for tname, src, tokens in templates():
        try:
            template = env.from_string(src)
        except jinja2.TemplateError as e:
            sys.stderr.write(f"{tname}: {e}\n")
            return 1
        for cname, conv in convs:
            pair = f"{tname}__{cname}"
            pairs.append(pair)
            context = {**tokens, **conv.get("extra", {})}
            try:
                text = template.render(messages=conv["messages"], tools=conv.get("tools"), documents=None,
                                       add_generation_prompt=conv["add_generation_prompt"], **context)
                path, data = os.path.join(out_dir, pair + ".out"), text
            except Exception as e:  # every failure is a parity case: moeq must fail too
                path, data = os.path.join(out_dir, pair + ".err"), f"{type(e).__name__}: {e}\n"
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(data)
    with open(os.path.join(out_dir, "pairs.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(pairs) + "\n")
    print(f"render_reference.py: jinja2 {jinja2.__version__}, {len(pairs)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
