"""The condition language of ``storyloom curate``: ``FIELD OP VALUE``, parsed here, never evaluated
as Python.

This module only parses and checks conditions (field names, operators, value types) and stays
free of heavy imports, so that ``storyloom --help`` lists the fields without loading pyarrow;
:mod:`pipeline.dataset.curate` evaluates them on a catalog. Examples::

    language in [en, de]          license not in [CC-BY-NC, "CC-BY-NC-SA"]
    source_kind == video          score_clip >= 0.25          score_align is null
    words >= 3                    text_chars < 400            flags has no_speech
    flags lacks repeated_image    frames >= 3
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any


class CurationError(ValueError):
    """A bad curation argument or expression, or an output directory that must not be written."""


@dataclass(frozen=True)
class FieldSpec:
    """A field conditions can name: its level, its value kind and the catalog column behind it."""

    level: str  # "story" (the source's), "frame", or "count" (frames left after the frame conditions)
    kind: str  # "str", "num" or "flags"
    column: str | None  # catalog column; None for values computed from the text
    help: str


FIELDS: dict[str, FieldSpec] = {
    "story_id": FieldSpec("story", "str", "story_id", "the story id"),
    "split": FieldSpec("story", "str", "split", "the input's split (train/test), before any re-split"),
    "language": FieldSpec("story", "str", "language", "the source's language code"),
    "license": FieldSpec("story", "str", "license", "the source's licence, e.g. CC-BY, CC0, public-domain"),
    "source_kind": FieldSpec("story", "str", "source_kind", "video or ebook"),
    "title": FieldSpec("story", "str", "title", "the source's title"),
    "creator": FieldSpec("story", "str", "creator", "the source's creator"),
    "source_url": FieldSpec("story", "str", "source_url", "the source's url"),
    "duration_s": FieldSpec("story", "num", "duration_s", "the video's duration in seconds"),
    "words": FieldSpec("frame", "num", None, "words in the frame's text (whitespace-separated)"),
    "text_chars": FieldSpec("frame", "num", None, "characters in the frame's text"),
    "score_clip": FieldSpec("frame", "num", "score_clip", "the frame's scores.clip"),
    "score_align": FieldSpec("frame", "num", "score_align", "the frame's scores.align"),
    "flags": FieldSpec("frame", "flags", "flags", "the frame's flags (has / lacks)"),
    "width": FieldSpec("frame", "num", "width", "image width in pixels"),
    "height": FieldSpec("frame", "num", "height", "image height in pixels"),
    "page": FieldSpec("frame", "num", "page", "the book page of the frame"),
    "t_start": FieldSpec("frame", "num", "t_start", "the frame's start in the video (s)"),
    "t_end": FieldSpec("frame", "num", "t_end", "the frame's end in the video (s)"),
    "caption": FieldSpec("frame", "str", "caption", "the frame's visual caption"),
    "frames": FieldSpec("count", "num", None, "frames the story has left after the frame conditions"),
}
ALIASES = {"licence": "license", "kind": "source_kind", "clip": "score_clip", "align": "score_align"}
COMPARISONS = {"==": "equal", "!=": "not_equal", "<": "less", "<=": "less_equal", ">": "greater",
               ">=": "greater_equal"}
OPS_BY_KIND = {
    "str": ("==", "!=", "in", "not in", "is null", "is not null"),
    "num": ("==", "!=", "<", "<=", ">", ">=", "in", "not in", "is null", "is not null"),
    "flags": ("has", "lacks"),
}

_TOKEN_RE = re.compile(r"""\s*(?:(?P<quoted>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>==|!=|<=|>=|<|>|=)"""
                       r"""|(?P<punct>[\[\],])|(?P<word>[^\s\[\],"'<>=!]+))""")
_BARE_RE = re.compile(r"^[^\s\[\],\"'<>=!]+$")
_KEYWORDS = {"in", "not", "has", "lacks", "is", "null"}


@dataclass(frozen=True)
class Condition:
    """One parsed ``--where`` condition."""

    field: str  # the canonical field name (aliases resolved)
    op: str  # one of OPS_BY_KIND[kind]
    value: Any = None  # str | float | tuple of them | None (is null / is not null)

    @property
    def spec(self) -> FieldSpec:
        return FIELDS[self.field]

    @property
    def level(self) -> str:
        return self.spec.level

    @property
    def text(self) -> str:
        """The canonical spelling (the reason name in counts and in config.json)."""
        if self.op in ("is null", "is not null"):
            return f"{self.field} {self.op}"
        if isinstance(self.value, tuple):
            return f"{self.field} {self.op} [{', '.join(_show(v) for v in self.value)}]"
        return f"{self.field} {self.op} {_show(self.value)}"


def _show(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    text = str(value)
    return text if _BARE_RE.match(text) and text not in _KEYWORDS else json.dumps(text, ensure_ascii=False)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if not text[pos:].strip():
            break
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            raise CurationError(f"bad condition {text!r}: cannot read {text[pos:].strip()!r}")
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "quoted":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind, value))
        pos = match.end()
    return tokens


def parse_condition(text: str) -> Condition:
    """A condition from its text, or :class:`CurationError` saying what is wrong with it."""
    tokens = _tokenize(text)

    def fail(why: str) -> CurationError:
        return CurationError(f"bad condition {text!r}: {why}")

    if not tokens:
        raise fail("it is empty")
    kind, name = tokens[0]
    if kind != "word":
        raise fail("it must start with a field name")
    name = ALIASES.get(name, name)
    if name not in FIELDS:
        raise fail(f"unknown field {name!r}; fields: {', '.join(sorted(FIELDS))}")
    spec = FIELDS[name]
    rest = tokens[1:]
    words = [t[1] if t[0] == "word" else None for t in rest]

    if words[:3] == ["is", "not", "null"] and len(rest) == 3:
        op, value_tokens = "is not null", []
    elif words[:2] == ["is", "null"] and len(rest) == 2:
        op, value_tokens = "is null", []
    elif words[:2] == ["not", "in"]:
        op, value_tokens = "not in", rest[2:]
    elif words[:1] in (["in"], ["has"], ["lacks"]):
        op, value_tokens = words[0], rest[1:]
    elif rest and rest[0][0] == "op":
        op, value_tokens = ("==" if rest[0][1] == "=" else rest[0][1]), rest[1:]
    else:
        raise fail("expected an operator after the field: ==, !=, <, <=, >, >=, in, not in, has, lacks, "
                   "is null, is not null")
    if op not in OPS_BY_KIND[spec.kind]:
        raise fail(f"{name} takes {', '.join(OPS_BY_KIND[spec.kind])}, not {op!r}")

    if op in ("is null", "is not null"):
        return Condition(name, op)
    if op in ("in", "not in"):
        items = _parse_list(value_tokens, fail)
        return Condition(name, op, tuple(_typed(spec, t, fail) for t in items))
    if value_tokens and value_tokens[0][0] not in ("word", "quoted"):
        raise fail(f"unexpected {value_tokens[0][1]!r} after {op!r}")
    if len(value_tokens) != 1:
        raise fail(f"expected one value after {op!r}" + (" (a list goes with in / not in)" if value_tokens else ""))
    return Condition(name, op, _typed(spec, value_tokens[0], fail))


def _parse_list(tokens: list[tuple[str, str]], fail) -> list[tuple[str, str]]:
    if len(tokens) < 3 or tokens[0] != ("punct", "[") or tokens[-1] != ("punct", "]"):
        raise fail("in / not in take a list: [a, b, c]")
    items = []
    inner = tokens[1:-1]
    for i, token in enumerate(inner):
        if i % 2 == 1:
            if token != ("punct", ","):
                raise fail("list items are separated by commas")
        elif token[0] not in ("word", "quoted"):
            raise fail(f"unexpected {token[1]!r} in the list")
        else:
            items.append(token)
    if len(inner) % 2 == 0:
        raise fail("the list ends with a comma")
    return items


def _typed(spec: FieldSpec, token: tuple[str, str], fail) -> str | float:
    kind, raw = token
    if kind not in ("word", "quoted"):
        raise fail(f"unexpected {raw!r} where a value belongs")
    if spec.kind == "num":
        try:
            number = float(raw) if kind == "word" else math.nan
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise fail(f"{raw!r} is not a number")
        return number
    if kind == "word" and raw == "null":
        raise fail("compare with null using `is null` / `is not null`")
    return raw
