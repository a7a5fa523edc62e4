"""Hypothesis strategies for hostile dataset and project files: wrong types, nulls, deep nesting, huge strings,
invalid UTF-8, BOMs, mixed line endings, NULs and other control characters, truncation."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import strategies as st

from loradesk.core.dataset import SPLITS, Example

#: Text that stays text through every format: printable, non-blank, with the odd characters users paste.
ODD_CHARS = "\x00\x07\x1b\x7f\x85\ufeff\u2028\u00a0\t\"',;\\é中😀"
texts = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(ODD_CHARS),
                max_size=40)
solid_texts = texts.filter(lambda t: t.strip() != "")

#: Keys a dataset record may have: every name the importers look for, in odd cases too, and noise.
KEYS = ["prompt", "completion", "question", "answer", "instruction", "input", "output", "response", "system",
        "split", "messages", "conversations", "role", "content", "from", "value", "Prompt", "COMPLETION", "x"]


def deep(depth: int) -> str:
    """A placeholder that :func:`_serialise` turns into lists nested ``depth`` deep (too deep to build here)."""
    return f"<<deep {depth}>>"


_DEEP = re.compile(r'"<<deep (\d+)>>"')


scalars = (st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.just(10**400) | st.floats() | texts)
#: Any JSON value, sometimes nested deeper than the parser can follow, sometimes a multi-megabyte string.
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.sampled_from(KEYS) | texts, inner, max_size=3), max_leaves=8) \
    | st.integers(200, 100_000).map(deep) | st.just("x" * (1 << 20)) \
    | st.sampled_from((*SPLITS, "val", "bogus", ""))

messages = st.lists(st.fixed_dictionaries(
    {}, optional={"role": st.sampled_from(["user", "assistant", "system", "human", "gpt", "tool"]) | values,
                  "from": st.sampled_from(["human", "gpt", "system", "bot"]) | values,
                  "content": texts | values, "value": texts | values}), max_size=4)
records = st.dictionaries(st.sampled_from(KEYS), values | texts, max_size=5) \
    | st.fixed_dictionaries({"messages": messages}) | st.fixed_dictionaries({"conversations": messages}) \
    | st.fixed_dictionaries({"prompt": texts, "completion": texts}, optional={"system": texts, "split": values})


def _csv(records_: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for rec in records_ for k in rec)) or ["prompt"]
    def cell(value: Any) -> str:
        text = value if isinstance(value, str) else json.dumps(value)[:200]
        return '"' + text.replace('"', '""') + '"'
    lines = [",".join(keys)] + [",".join(cell(rec.get(k, "")) for k in keys) for rec in records_]
    return "\n".join(lines) + "\n"


def _serialise(container: str, records_: list[Any]) -> bytes:
    if container == "json":
        text = json.dumps(records_, ensure_ascii=False)
    elif container == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records_)
    else:
        text = _csv([r for r in records_ if isinstance(r, dict)])
    text = _DEEP.sub(lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def mutate(draw: st.DrawFn, data: bytes) -> bytes:
    """Byte-level damage a file meets in the wild (or none)."""
    kind = draw(st.sampled_from(["none", "bom", "crlf", "cr", "truncate", "insert", "nul", "utf16", "deep",
                                 "surrogate", "empty"]))
    if kind == "bom":
        return b"\xef\xbb\xbf" + data
    if kind == "crlf":
        return data.replace(b"\n", b"\r\n")
    if kind == "cr":  # mixed: only some line ends become a bare CR
        return data.replace(b"\n", b"\r", draw(st.integers(0, 3)))
    if kind == "truncate":
        return data[:draw(st.integers(0, max(0, len(data) - 1)))]
    if kind in ("insert", "nul"):
        at = draw(st.integers(0, len(data)))
        junk = b"\x00" if kind == "nul" else draw(st.binary(min_size=1, max_size=4))
        return data[:at] + junk + data[at:]
    if kind == "utf16":
        return data.decode("utf-8", "replace").encode("utf-16")
    if kind == "deep":
        depth = draw(st.integers(900, 100_000))
        return b"[" * depth + data + b"]" * draw(st.integers(0, depth))
    if kind == "surrogate":
        return data.replace(b'"prompt": "', b'"prompt": "\\udc80', 1)
    if kind == "empty":
        return b" \n\t" * draw(st.integers(0, 3))
    return data


@st.composite
def dataset_files(draw: st.DrawFn) -> tuple[str, bytes]:
    """``(file name, content)`` of a random, often broken, dataset file."""
    container = draw(st.sampled_from(["json", "jsonl", "csv"]))
    items = draw(st.lists(records | values, max_size=4) if draw(st.booleans())
                 else st.lists(records, min_size=1, max_size=4))
    data = draw(mutate(_serialise(container, items)))
    suffix = draw(st.sampled_from([container, "json", "jsonl", "csv", "txt"]))
    return f"data.{suffix}", data


examples = st.builds(Example, solid_texts, solid_texts, texts, st.sampled_from(SPLITS))


@st.composite
def project_documents(draw: st.DrawFn, base: dict[str, Any]) -> Any:
    """A project document (``base``: a valid one) with one node replaced by a random value, or left alone."""
    doc = json.loads(json.dumps(base))
    paths: list[list[Any]] = [[]]
    stack: list[tuple[list[Any], Any]] = [([], doc)]
    while stack:
        path, node = stack.pop()
        children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in children:
            paths.append([*path, key])
            stack.append(([*path, key], child))
    if draw(st.booleans()):
        path = draw(st.sampled_from(paths))
        if not path:
            return draw(values)
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        if isinstance(parent, dict) and draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(values)
    return doc
