#!/usr/bin/env python3
"""Reference token ids from Hugging Face `tokenizers` for tests/test_tokenizer.cpp.

    pip install tokenizers && python3 tools/make_token_fixtures.py

Writes tests/fixtures/tokens/:
  <name>.u16     ids of each data/eval/dev_*.txt (whole file) as little-endian uint16;
  calib_256k.u16 ids of data/calib/calib_mixed.txt cut to its first 256 KiB, cut back to just
                 after the last b"\\n" in them (the C++ test cuts the same way), to stay small;
  tricky.json    short hard cases: {"version", "cases": [{"text", "ids", "ids_no_special",
                 "decoded", "decoded_skip"}], "variants": [{"name", "cases": [...]}]};
                 ids_no_special is with encode_special_tokens; each variant is tiny-m2's
                 tokenizer.json edited as VARIANTS says (the C++ test makes the same edits).
All encodings use add_special_tokens=False.
"""
import json
import pathlib
import struct

from tokenizers import Tokenizer, __version__ as tokenizers_version

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "tokens"
CALIB_BYTES = 256 * 1024

TRICKY = [
    "",
    " ",
    "\n",
    "Hello, world! DON'T YOU'LL I'M WE'VE THEY'RE HE'D IT'S don't you'll it's",
    "'s 'S 'ſ 'Ll 'lL 'RE 'rE 'Ve 'M 'D 'T 'x a's b'S c'\u017f",
    "Привет мир, Γειά σου Κόσμε, こんにちは世界, 你好，世界, 안녕하세요, مرحبا بالعالم, שלום עולם, "
    "नमस्ते दुनिया, สวัสดีชาวโลก, Ἀθῆναι",
    "١٢٣٤٥ ٦٧٨ ०१२३ ১২৩ 一二三 ①②③ Ⅻ ½ ¾ 123456789 ３４５ 1234567 12.5% $1,000,000 3.14159",
    "👍🏽 👨\u200d👩\u200d👧\u200d👦 🇫🇷 😀😃 ❤️ 🤖x🤖 ",
    "line1\r\nline2\r\n\r\n  indented\r\n\ttab\r\n\r",
    "a    b\n\n\n   c \t \t d      \n  \n end   ",
    " " * 3000 + "x",
    "\n" * 1000 + "y" + "\r\n" * 500,
    "]~!b[]~b]system\nYou are helpful.[e~[\n]~b]user\nhi<think>hmm</think>[e~[\n]~b]ai\n<think>\n",
    "<think <think>> [e~[[e~[ ]~!b ]~!b[[ </minimax:tool_call><minimax:tool_call> x<fim_prefix>y",
    "a" * 2000 + " " + "supercalifragilistic" * 100 + " end",
    "".join(chr(c) for c in range(0x2000, 0x2100)) + "xyz",
    # characters where PCRE2's own classes differ from Oniguruma's (see src/text/bpe_regex.h)
    "a\u0085b \u0085 \u180e c\u180ed \u00a0\u00a0x \u2028\u2029 \u3000y",
    "\u1c89\u1c8a test \U00010d40\U00010d41 \u1c89x \U00010d4a\U00010d49 \U000323af9\U0001e5fa",
    "e\u0301 cafe\u0301 n\u0303 \u0301\u0301a \u0915\u094d\u0937",
    "def f(x):\n    return x**2  # comment\n\nif __name__ == '__main__':\n\tf(3)\n",
    "...!!! ??? --- *** ''' \"\"\" ``` <<< >>> ((( ))) {{ }} /* */ // \\\\",
    "\x00\x01\x1f\x7f control \x0b\x0c",
    "mixed123abc 456def 7890 a1b2c3 ½x x½",
]


def _gpt2(j, prefix):
    j["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": prefix, "trim_offsets": True,
                          "use_regex": True}


def _added(j):
    n = len(j["model"]["vocab"])
    j["added_tokens"].append({"id": n, "content": "<mask>", "single_word": True, "lstrip": True,
                              "rstrip": True, "normalized": False, "special": False})
    j["added_tokens"].append({"id": n + 1, "content": "<m2>", "single_word": False, "lstrip": False,
                              "rstrip": False, "normalized": True, "special": False})


def _ignore_merges(j):
    j["model"]["ignore_merges"] = True


SHORT = [t for t in TRICKY if len(t) < 1000]
VARIANTS = {
    "gpt2_byte_level": (lambda j: _gpt2(j, False), SHORT),
    "gpt2_byte_level_prefix": (lambda j: _gpt2(j, True), SHORT),
    "ignore_merges": (_ignore_merges, SHORT),
    "added_flags": (_added, [
        "a <mask>  b x<mask>y <mask>\t<mask>\u2000z",
        "<mask>",
        "\u00e9<mask> _<mask> <mask>\u00e9 -<mask>- \u0301<mask>",
        "<m2> x<m2>y <mask><m2> <m2><mask> ]~!b[<mask>[e~[",
    ]),
}


def ids_of(tok, text):
    return tok.encode(text, add_special_tokens=False).ids


def cases_of(tok, texts):
    cases = []
    for text in texts:
        ids = ids_of(tok, text)
        tok.encode_special_tokens = True
        plain = ids_of(tok, text)
        tok.encode_special_tokens = False
        cases.append({
            "text": text,
            "ids": ids,
            "ids_no_special": plain,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decoded_skip": tok.decode(ids, skip_special_tokens=True),
        })
    return cases


def write_u16(path, ids):
    assert max(ids, default=0) < 65536
    path.write_bytes(struct.pack(f"<{len(ids)}H", *ids))
    print(f"{path.relative_to(ROOT)}: {len(ids)} ids")


def main():
    tok = Tokenizer.from_file(str(ROOT / "models" / "tiny-m2" / "tokenizer.json"))
    OUT.mkdir(parents=True, exist_ok=True)
    for f in sorted((ROOT / "data" / "eval").glob("dev_*.txt")):
        write_u16(OUT / f"{f.stem}.u16", ids_of(tok, f.read_bytes().decode("utf-8")))
    calib = (ROOT / "data" / "calib" / "calib_mixed.txt").read_bytes()[:CALIB_BYTES]
    calib = calib[: calib.rfind(b"\n") + 1]
    write_u16(OUT / "calib_256k.u16", ids_of(tok, calib.decode("utf-8")))

    doc = {"version": f"tokenizers {tokenizers_version}", "cases": cases_of(tok, TRICKY),
           "variants": []}
    base = json.loads((ROOT / "models" / "tiny-m2" / "tokenizer.json").read_text())
    for name, (edit, texts) in VARIANTS.items():
        j = json.loads(json.dumps(base))
        edit(j)
        vtok = Tokenizer.from_str(json.dumps(j))
        doc["variants"].append({"name": name, "cases": cases_of(vtok, texts)})
    # One case per line, so that a diff shows which case changed.
    dump = lambda c: json.dumps(c, ensure_ascii=True, separators=(",", ":"))
    text = '{"version":%s,\n"cases":[\n%s\n],\n"variants":[\n%s\n]}\n' % (
        json.dumps(doc["version"]), ",\n".join(map(dump, doc["cases"])),
        ",\n".join('{"name":%s,"cases":[\n%s\n]}' % (json.dumps(v["name"]), ",\n".join(map(dump, v["cases"])))
                   for v in doc["variants"]))
    assert json.loads(text) == doc
    (OUT / "tricky.json").write_text(text)
    print(f"tests/fixtures/tokens/tricky.json: {len(doc['cases'])} cases, {len(VARIANTS)} variants")


if __name__ == "__main__":
    main()
