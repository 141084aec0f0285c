"""Subtitle reading: WebVTT/SRT parsing, auto-caption cleanup and sentence splitting.

Three steps, each a plain function over :class:`Cue` lists:

- :func:`parse_subtitles` reads WebVTT or SRT text (tags, entities, cue settings, NOTE/STYLE
  blocks, BOM, CRLF) into cues whose ``text`` keeps the cue's lines joined by ``"\\n"``. The
  inline word timings of auto-captions (``once<00:00:03.520><c> upon</c>``) are kept as the
  cue's :class:`Word` list (and stripped from the text, as every tag is).
- :func:`clean_cues` removes what is not narration: the repeated lines of YouTube's rolling
  auto-captions and their 10 ms "snapshot" cues, sound annotations such as ``[Music]``, and
  empty cues; it leaves one line of text per cue. Word-timed lines are de-duplicated by time.
- :func:`split_sentences` turns cues into sentence-level timed units for alignment; a unit made
  of word-timed cues keeps its words.

Only the standard library (and the error types) is used here, so the module is cheap to import anywhere.
"""

from __future__ import annotations

import codecs
import html
import itertools
import logging
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from pipeline.errors import StageError

log = logging.getLogger(__name__)

SNAPSHOT_MAX_S = 0.05  # YouTube's rolling captions interleave ~10 ms cues repeating the screen
MAX_JOIN_GAP_S = 0.5  # a sentence continues into the next cue only across a pause this short
TIGHT_JOIN_GAP_S = 0.15  # ... or this short when the next cue starts with a capital (a page title?)
MAX_SENTENCE_CHARS = 400  # never grow a cross-cue sentence beyond this (unpunctuated runs)


@dataclass(frozen=True)
class Word:
    """One word of a word-timed cue: spoken from ``start``; ``end`` is the next word's start (the
    cue's end for its last word), so it includes any pause after the word."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Cue:
    """A piece of text shown (or spoken) from ``start`` to ``end`` seconds.

    ``words`` holds the inline word timings of auto-captions, in spoken order (empty when the
    subtitles have none). After :func:`parse_subtitles` they are the words of the cue's timed
    lines only; after :func:`clean_cues` a cue that has words has them for all of its text
    (``text == " ".join(w.text for w in words)``). They do not take part in comparisons: two
    cues with the same span and text are equal.
    """

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = field(default=(), compare=False)


class SubtitleError(StageError):
    """Subtitle data that cannot be read; the message is meant for the user."""


# --------------------------------------------------------------------------- parsing

_TS = r"(?:(\d+):)?(\d{1,2}):(\d{2})(?:[.,](\d{1,3}))?"
_TIMING_RE = re.compile(rf"^\s*{_TS}\s*-->\s*{_TS}(?:\s.*)?$")
_TAG_RE = re.compile(
    r"<rt>.*?</rt>"  # ruby annotations: not part of the spoken text
    r"|</?[A-Za-z][^<>]*>"  # <i>, </i>, <c.colorE5E5E5>, <v Speaker>, <font color=...>
    r"|<\d{1,2}(?::\d{2}){1,2}[.,]\d{1,3}>"  # inline timing <00:00:01.520>
    r"|\{\\[^{}]*\}"  # SRT/ASS override codes {\an8}
)
_INLINE_TIME_RE = re.compile(r"<(\d{1,2}(?::\d{2}){1,2}[.,]\d{1,3})>")  # the same timing as in _TAG_RE
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200e\u200f\u2060\ufeff"), None)
_SKIP_BLOCK_RE = re.compile(r"^(NOTE|STYLE|REGION)(\s|$)")
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f\ufffd]")  # binary junk (\ufffd: undecodable)


def parse_subtitles(data: str | bytes, fmt: str | None = None) -> list[Cue]:
    """Parse WebVTT or SRT (``fmt`` "vtt"/"srt", sniffed when None) into cues in file order.

    Malformed cues are skipped with a warning, and binary junk inside a text file is dropped
    when readable cues remain; :class:`SubtitleError` is raised when the data is empty, binary,
    in another format, or holds no cue with a valid timing and some text.
    """
    text = _decode(data).translate({0xFEFF: None}).replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise SubtitleError("the subtitle file is empty")
    text, junk = _CONTROL_RE.subn("", text)
    binary = junk > max(2, len(text) // 100)
    try:
        fmt = (fmt or _sniff(text)).lower()
        if fmt not in ("vtt", "srt"):
            raise SubtitleError(f"unsupported subtitle format {fmt!r} (supported: vtt, srt)")
        cues = _parse_blocks(text, fmt)
    except SubtitleError as exc:
        if binary:
            raise SubtitleError("the subtitle file holds binary data, not WebVTT or SRT text") from exc
        raise
    if junk:
        log.warning("dropped %d control character(s) of binary junk from subtitle data", junk)
    return cues


def _parse_blocks(text: str, fmt: str) -> list[Cue]:
    if fmt == "vtt" and not text.lstrip().startswith("WEBVTT"):
        log.warning("WebVTT data without a 'WEBVTT' header; parsing it anyway")
    cues: list[Cue] = []
    bad = 0
    separator = r"\n{2,}" if fmt == "vtt" else r"\n[ \t]*\n"  # YouTube VTT cues hold " " lines
    for block in re.split(separator, text.strip("\n")):
        lines = block.split("\n")
        timing_rows = [i for i, line in enumerate(lines) if "-->" in line]
        if not timing_rows or _SKIP_BLOCK_RE.match(lines[0]):
            if fmt == "srt" and cues and not block.strip().isdigit() and not timing_rows:
                # a blank line inside an SRT cue's text: keep the text with its cue
                last = cues[-1]
                cues[-1] = Cue(last.start, last.end, _join_lines([last.text, *lines]),
                               last.words + _timed_words(lines, last.start, last.end))
            elif not (lines[0].startswith("WEBVTT") or _SKIP_BLOCK_RE.match(lines[0])):
                log.warning("ignoring a subtitle block without a timing line: %.60r", block)
            continue
        for n, row in enumerate(timing_rows):
            stop = timing_rows[n + 1] if n + 1 < len(timing_rows) else len(lines)
            body = lines[row + 1 : stop]
            if n + 1 < len(timing_rows) and body and body[-1].strip().isdigit():
                body = body[:-1]  # the next SRT cue's number (blank line missing)
            times = _parse_timing(lines[row])
            if times is None:
                bad += 1
                log.warning("skipping a cue with a malformed timing line %r", lines[row].strip())
                continue
            cues.append(Cue(times[0], times[1], _join_lines(body), _timed_words(body, *times)))
    if not cues:
        if bad:
            raise SubtitleError(f"none of the {bad} subtitle cue(s) has a valid timing line")
        raise SubtitleError("no subtitle cues found (expected WebVTT or SRT)")
    if not any(c.text for c in cues):
        raise SubtitleError(f"the {len(cues)} subtitle cue(s) hold no text")
    if bad:
        log.warning("skipped %d malformed cue(s) of %d", bad, bad + len(cues))
    return cues


def _decode(data: str | bytes) -> str:
    if isinstance(data, str):
        return data
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        log.warning("subtitles are not valid UTF-8; reading them as cp1252")
        return data.decode("cp1252", errors="replace")


def _sniff(text: str) -> str:
    if text.lstrip().startswith("WEBVTT"):
        return "vtt"
    if re.search(r"\d:\d{2},\d{1,3}\s*-->", text):
        return "srt"
    if "-->" in text:
        return "vtt"  # VTT-style timings without a header: read leniently
    raise SubtitleError("no subtitle cues found (expected WebVTT or SRT)")


def _parse_timing(line: str) -> tuple[float, float] | None:
    match = _TIMING_RE.match(line)
    if not match:
        return None
    h1, m1, s1, f1, h2, m2, s2, f2 = match.groups()
    if max(int(m1), int(s1), int(m2), int(s2)) >= 60:
        return None
    start = int(h1 or 0) * 3600 + int(m1) * 60 + int(s1) + int((f1 or "0").ljust(3, "0")) / 1000
    end = int(h2 or 0) * 3600 + int(m2) * 60 + int(s2) + int((f2 or "0").ljust(3, "0")) / 1000
    return (start, end) if end >= start else None


def _join_lines(lines: Iterable[str]) -> str:
    """Strip markup from each line, collapse its whitespace and drop empty lines."""
    out = []
    for line in lines:
        line = " ".join(_plain(line).split())
        if line:
            out.append(line)
    return "\n".join(out)


def _plain(text: str) -> str:
    """``text`` without markup and entities; invisible characters dropped, no-break spaces as spaces."""
    return html.unescape(_TAG_RE.sub("", text)).translate(_INVISIBLE).replace("\xa0", " ")


def _parse_inline_time(stamp: str) -> float:
    """Seconds of an inline timing ``HH:MM:SS.mmm`` or ``MM:SS.mmm``."""
    *units, seconds = stamp.replace(",", ".").split(":")
    whole, _, fraction = seconds.partition(".")
    value = int(whole) + int(fraction.ljust(3, "0")) / 1000
    for scale, unit in zip((60, 3600), reversed(units)):
        value += scale * int(unit)
    return value


def _timed_words(body: Sequence[str], start: float, end: float) -> tuple[Word, ...]:
    """The words of the lines of a cue body that carry inline timings (``<00:00:01.520>``).

    The text before a line's first timing starts at the cue's start; each timing starts the word
    after it. Several words between two timings share that stretch evenly; a word's end is the
    next word's start, and the cue's end closes the last one. Timings out of order or outside the
    cue are clamped into it. A line whose words would not spell its text is left untimed.
    """
    words: list[Word] = []
    for line in body:
        parts = _INLINE_TIME_RE.split(line)
        if len(parts) == 1:
            continue
        times = [start] + [min(max(_parse_inline_time(stamp), start), end) for stamp in parts[1::2]]
        times = list(itertools.accumulate(times, max))  # never backwards
        tokens: list[list] = []  # [text, start]
        for n, chunk in enumerate(parts[0::2]):
            text = _plain(chunk)
            pieces = text.split()
            if not pieces:
                continue
            if tokens and not text[0].isspace():  # "yum<t><c>my</c>": one word, as in the text
                tokens[-1][0] += pieces.pop(0)
            t0 = times[n]
            t1 = times[n + 1] if n + 1 < len(times) else end
            tokens.extend([piece, t0 + (t1 - t0) * k / len(pieces)] for k, piece in enumerate(pieces))
        if " ".join(t for t, _ in tokens) != _join_lines([line]):
            log.debug("inline timings that do not spell their line %.60r; line left untimed", line)
            continue
        for k, (text, t0) in enumerate(tokens):
            t1 = tokens[k + 1][1] if k + 1 < len(tokens) else end
            words.append(Word(round(t0, 3), round(t1, 3), text))
    return tuple(words)


# --------------------------------------------------------------------------- cleaning

_ANNOTATION_RE = re.compile(
    r"\[[^\[\]]*\]"  # [Music], [Applause], [laughter]
    r"|\(\s*[^\W\d_][\w'-]*(?:\s+[^\W\d_][\w'-]*){0,2}\s*\)"  # (laughs), (MUSIC PLAYING): 1-3 words
    r"|[♪♫♬♩]+"  # music notes
    r"|(?<!\S)>>+(?!\S)"  # YouTube speaker-change marker
)


def clean_cues(cues: Iterable[Cue], rolling: bool | None = None) -> list[Cue]:
    """Return cues with one line of narration each, every spoken word exactly once, in order.

    ``rolling`` says whether the cues are YouTube-style rolling captions (each cue repeats the
    previous cue's last line and adds one); None detects it. Snapshot cues shorter than
    ``SNAPSHOT_MAX_S`` that only repeat their neighbours are dropped, as are sound annotations
    and cues left empty. Clean manual subtitles come back with only whitespace changed.

    When the cues carry inline word timings (auto-captions), a timed word is the same word
    wherever it is repeated exactly when it has the same start time: timed lines are
    de-duplicated by time, never by their text (a refrain that really is spoken twice stays
    twice). The untimed lines of such a track (the rolling repeat of the previous line, or a
    new one-word line, which YouTube writes without timings) are compared as text, and a new
    one gets words spread over its cue. Each cue that keeps text then has words for all of it.
    """
    ordered = sorted(cues, key=lambda c: c.start)  # stable: file order among equal starts
    timed = any(c.words for c in ordered)
    lines = [_cue_lines(c) for c in ordered]
    texts = [[text for text, _ in cue_lines] for cue_lines in lines]
    keep: list[int] = []
    snapshots = 0
    for i, cue in enumerate(ordered):
        if not texts[i]:
            continue
        if cue.end - cue.start < SNAPSHOT_MAX_S and not any(words for _, words in lines[i]):
            around = set(texts[keep[-1]] if keep else ()) | set(texts[i + 1] if i + 1 < len(texts) else ())
            if set(texts[i]) <= around:
                snapshots += 1
                continue
        keep.append(i)
    if rolling is None:
        pairs = list(zip(keep, keep[1:]))
        hits = sum(1 for a, b in pairs if _new_lines(texts[a], texts[b]) != texts[b])
        rolling = hits >= 1 and 2 * hits >= len(pairs) and (hits >= 2 or snapshots > 0)
        if rolling:
            log.debug("rolling auto-captions detected (%d of %d cue pairs repeat lines)", hits, len(pairs))
    out: list[Cue] = []
    previous: list[str] = []
    seen: set[int] = set()  # start times (ms) of the timed words already taken
    for i in keep:
        new = _new_lines(previous, texts[i]) if rolling else texts[i]
        previous = texts[i]
        cue = ordered[i]
        if not timed:
            text = " ".join(new)
            if text:
                out.append(Cue(cue.start, cue.end, text))
            continue
        words: list[Word] = []
        spread: list[Word] = []
        first_new = len(texts[i]) - len(new)  # new[0] may be the new end of a growing line
        for n, (_, line_words) in enumerate(lines[i]):
            if line_words is None:  # untimed: new only where the text says so
                if n >= first_new:
                    spread.extend(_spread(new[n - first_new], cue.start, cue.end))
                continue
            for word in line_words:
                key = round(word.start * 1000)
                if key not in seen:
                    seen.add(key)
                    words.append(word)
        seen.update(round(w.start * 1000) for w in spread)
        words = sorted(words + spread, key=lambda w: w.start)  # stable: timed words first at equal times
        if words:
            out.append(Cue(cue.start, cue.end, " ".join(w.text for w in words), tuple(words)))
    return out


def _cue_lines(cue: Cue) -> list[tuple[str, tuple[Word, ...] | None]]:
    """The cue's lines after annotation removal, each with its timed words (None: an untimed line).

    Timed lines are found from the end of the cue (YouTube puts the new, timed line last): a line
    is timed when its words are the last words not yet given to a later line.
    """
    raw = [line for line in cue.text.split("\n") if line.strip()]
    remaining = list(cue.words)
    timed: list[tuple[Word, ...] | None] = [None] * len(raw)
    for n in range(len(raw) - 1, -1, -1):
        tokens = raw[n].split()
        if remaining and len(tokens) <= len(remaining) and [w.text for w in remaining[-len(tokens):]] == tokens:
            timed[n] = tuple(remaining[-len(tokens):])
            del remaining[-len(tokens):]
    if remaining:
        log.debug("word timings that match no line of the cue at %.3f s; the cue is read untimed", cue.start)
        timed = [None] * len(raw)
    out = []
    for line, words in zip(raw, timed):
        if words is None:
            text = " ".join(_ANNOTATION_RE.sub(" ", line).split())
            if text:
                out.append((text, None))
            continue
        words = _drop_annotations(words)
        if words:
            out.append((" ".join(w.text for w in words), words))
    return out


def _drop_annotations(words: tuple[Word, ...]) -> tuple[Word, ...]:
    """Timed words without sound annotations ([Music], >>, ...), which may span several words."""
    joined = " ".join(w.text for w in words)
    covered = [False] * len(joined)
    for match in _ANNOTATION_RE.finditer(joined):
        covered[match.start() : match.end()] = [True] * (match.end() - match.start())
    out, at = [], 0
    for word in words:
        text = "".join(ch for ch, gone in zip(word.text, covered[at : at + len(word.text)]) if not gone)
        at += len(word.text) + 1
        if text:
            out.append(Word(word.start, word.end, text))
    return tuple(out)


def _spread(text: str, start: float, end: float) -> list[Word]:
    """The words of an untimed line spread evenly over ``start..end`` (a one-word line: all of it)."""
    tokens = text.split()
    step = (end - start) / max(len(tokens), 1)
    return [Word(round(start + k * step, 3), round(start + (k + 1) * step, 3) if k + 1 < len(tokens) else end, token)
            for k, token in enumerate(tokens)]


def _new_lines(previous: list[str], current: list[str]) -> list[str]:
    """The lines of ``current`` that a rolling caption adds to ``previous``."""
    for k in range(min(len(previous), len(current)), 0, -1):
        if previous[-k:] == current[:k]:
            return current[k:]
    if previous and current and current[0].startswith(previous[-1] + " "):
        return [current[0][len(previous[-1]) + 1 :], *current[1:]]  # a growing line
    return current


# --------------------------------------------------------------------------- sentences

_TERMINATORS = ".!?…‼⁇⁈⁉؟।"
_CJK_TERMINATORS = "。！？"
_CLOSERS = "\"'”’»)]}」』）›"
_OPENERS = "¿¡"  # a cue starting with these starts a sentence
_END_RE = re.compile(rf"([{re.escape(_TERMINATORS + _CJK_TERMINATORS)}]+)([{re.escape(_CLOSERS)}]*)")
_END_AT_END_RE = re.compile(_END_RE.pattern + "$")
_ABBREVIATIONS = {
    "": {"mr", "mrs", "ms", "dr", "st", "prof", "sr", "jr", "vs", "mt", "e.g", "i.e", "cf", "approx", "fig"},
    "es": {"sra", "srta", "dra", "ud", "uds", "av"},
    "fr": {"m", "mme", "mlle"},
    "de": {"z.b", "bzw", "usw", "hr", "fr"},
}


def split_sentences(cues: Iterable[Cue], language: str | None = None, max_join_gap_s: float = MAX_JOIN_GAP_S) -> list[Cue]:
    """Split cleaned cues into sentence-level timed units.

    A cue holding several sentences is split, its time shared in proportion to their lengths; a
    sentence running over several cues becomes one unit from the first cue's start to the last
    cue's end. A cue continues the sentence when the pause before it is at most
    ``max_join_gap_s`` and it starts in lowercase (or the sentence so far ends in , ; : or a
    dash); one starting with a capital continues only across ``TIGHT_JOIN_GAP_S``, since in
    read-alouds an unpunctuated cue is often a title page. Terminators are . ! ? … and 。！？ with
    closing quotes kept; abbreviations, decimals and a terminator followed by a lowercase word
    (``"Shhh!" said the farmer.``) do not end a sentence. Unpunctuated text stays cue-sized.

    Word timings go with their text: a sentence cut from a word-timed cue keeps its words and
    their times (instead of a share of the cue's), and a sentence joined from several cues keeps
    all of theirs (none, if one of the cues has no timings).
    """
    cues = [Cue(c.start, c.end, " ".join(c.text.split()), c.words) for c in cues]
    cues = [c for c in cues if c.text]
    abbreviations = _ABBREVIATIONS[""] | _ABBREVIATIONS.get((language or "").lower().split("-")[0], set())
    terminators = sum(1 for c in cues for m in _END_RE.finditer(c.text))
    if terminators < 0.2 * len(cues):  # auto captions: no punctuation to go by
        return cues

    units: list[Cue] = []
    current: Cue | None = None
    for n, cue in enumerate(cues):
        for k, piece in enumerate(_timed_pieces(cue, abbreviations)):
            joins = (
                k == 0
                and current is not None
                and len(current.text) + len(piece.text) < MAX_SENTENCE_CHARS
                and _continues(current.text, piece.text, piece.start - cues[n - 1].end, max_join_gap_s, abbreviations)
            )
            if joins:
                sep = "" if _is_cjk(current.text[-1]) and _is_cjk(piece.text[0]) else " "
                words = current.words + piece.words if current.words and piece.words and sep else ()
                current = Cue(current.start, piece.end, current.text + sep + piece.text, words)
            else:
                if current is not None:
                    units.append(current)
                current = piece
    if current is not None:
        units.append(current)
    return units


def _timed_pieces(cue: Cue, abbreviations: set[str]) -> list[Cue]:
    """The sentences within one cue, the cue's time shared in proportion to their lengths."""
    pieces, begin = [], 0
    for match in _END_RE.finditer(cue.text):
        end = match.end()
        if not any(ch in _CJK_TERMINATORS for ch in match.group(1)):
            if end < len(cue.text) and not cue.text[end].isspace():
                continue  # 3.5, e.g, U.S.A
            if match.group(1) == "." and _is_abbreviation(cue.text[: match.start()], abbreviations):
                continue
            following = cue.text[end:].lstrip()
            if following[:1].islower():
                continue  # "Shhh!" sabi ng magsasaka.
        if cue.text[begin:end].strip():
            pieces.append(cue.text[begin:end].strip())
        begin = end
    if cue.text[begin:].strip():
        pieces.append(cue.text[begin:].strip())
    if cue.words and [t for p in pieces for t in p.split()] == [w.text for w in cue.words]:
        out, taken = [], 0
        for n, piece in enumerate(pieces):
            words = cue.words[taken : taken + len(piece.split())]
            taken += len(words)
            t0 = cue.start if n == 0 else words[0].start
            t1 = cue.end if n == len(pieces) - 1 else words[-1].end
            out.append(Cue(t0, t1, piece, words))
        return out
    total = sum(len(p) for p in pieces)
    out, done = [], 0
    for piece in pieces:
        t0 = cue.start + (cue.end - cue.start) * done / total
        done += len(piece)
        t1 = cue.end if done == total else cue.start + (cue.end - cue.start) * done / total
        out.append(Cue(t0, t1, piece))
    return out


def _continues(previous: str, nxt: str, gap: float, max_gap: float, abbreviations: set[str]) -> bool:
    """Whether ``nxt`` (the start of a cue) continues the sentence ``previous``."""
    if gap > max_gap or nxt[0] in _OPENERS:
        return False
    if _ends_sentence(previous, abbreviations):
        return nxt[0].islower()  # "Help!" / cried the fox.
    if nxt[0].islower() or previous[-1] in ",;:-–—":
        return True
    # "a fox named" / "Felix." continues, but so would a title cue without a full stop followed
    # by the first page: trust a capital only across the pause of continuous speech
    return gap <= min(max_gap, TIGHT_JOIN_GAP_S)


def ends_sentence(text: str) -> bool:
    """Whether ``text`` ends a sentence: a terminator (. ! ? … 。！？, closing quotes after it allowed)
    that is not the full stop of an abbreviation or initial."""
    text = text.rstrip()
    return bool(text) and _ends_sentence(text, _ABBREVIATIONS[""])


def _ends_sentence(text: str, abbreviations: set[str]) -> bool:
    match = _END_AT_END_RE.search(text)
    if match is None:
        return False
    return not (match.group(1) == "." and _is_abbreviation(text[: match.start()], abbreviations))


def _is_abbreviation(before: str, abbreviations: set[str]) -> bool:
    """Whether the word ending at a "." (``before`` is the text up to it) is an abbreviation."""
    words = before.split()
    if not words:
        return False
    word = words[-1].lstrip("\"'“‘(¿¡")
    if len(word) == 1 and word.isalpha() and word.isupper():
        return True  # an initial: J. K. Rowling
    return word.lower() in abbreviations


def _is_cjk(ch: str) -> bool:
    code = ord(ch)
    return 0x3000 <= code <= 0x9FFF or 0xAC00 <= code <= 0xD7AF or 0xF900 <= code <= 0xFFEF
