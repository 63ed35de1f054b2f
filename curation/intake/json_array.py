"""The elements of one JSON array, read as its text streams in: a file of 10M rows is never in
memory as a whole, only the window from the element being read onwards.

Each element is parsed by the json module's own scanner where it can be (C speed); an element that
does not parse is found by matching brackets and quotes instead, so one bad element is one reject
and the elements after it are still read. Where the array's structure itself breaks (an unclosed
bracket, a missing comma), reading stops there and says where, by line and column of the file."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterator

_STRUCTURE = re.compile(r'["\[\]{}]')
_STRING_STOP = re.compile(r'["\\]')
_OPENERS, _CLOSERS = re.compile(r"[\[{]+"), re.compile(r"[\]}]+")
_SCALAR = re.compile(r'[^\s,\[\]{}"]+')
_SPACE = re.compile(r"\s*")
_LEADING = re.compile(r"[\s\ufeff]*")  # before the array: byte-order marks too
_SURROGATE = re.compile("[\ud800-\udfff]")  # an undecodable byte, kept by surrogateescape
_SCAN = json.JSONDecoder().raw_decode
_PARSE_FAILURES = (ValueError, RecursionError)  # JSONDecodeError, an over-long integer, deep nesting


@dataclass
class Element:
    number: int  # 1-based, in the array
    value: object = None  # parsed, when `text` is None and `stop` is None
    text: str | None = None  # the element's text when it did not parse (or holds undecodable bytes)
    stop: str | None = None  # the structure breaks here: where and why; nothing after it is read


def _string_end(text: str, pos: int) -> int | None:
    """Just past the closing quote of the string whose body starts at pos; None when the text ends first."""
    while (found := _STRING_STOP.search(text, pos)) is not None:
        if found.group() == '"':
            return found.end()
        pos = found.end() + 1  # a backslash escapes the next character
    return None


def value_end(text: str, pos: int) -> int | None:
    """Just past the JSON value starting at pos, found by matching brackets and quotes, not by
    parsing (so any depth, and a broken value still has an end); None when the text ends first."""
    depth = 0
    while pos < len(text):
        char = text[pos]
        if char == '"':
            pos = _string_end(text, pos + 1)
            if pos is None:
                return None
        elif char in "[{":  # a run at once: a row nested 100,000 deep is one step, not 100,000
            run = _OPENERS.match(text, pos).end() - pos
            depth, pos = depth + run, pos + run
        elif char in "]}":
            if depth == 0:
                return pos
            run = min(_CLOSERS.match(text, pos).end() - pos, depth)
            depth, pos = depth - run, pos + run
        elif depth == 0:  # a number or literal: up to the next separator
            scalar = _SCALAR.match(text, pos)
            return scalar.end() if scalar else pos
        if depth == 0:
            return pos
        found = _STRUCTURE.search(text, pos)
        if found is None:
            return None
        pos = found.start()
    return None


class _Window:
    """The text from some point of the file onwards, with more read in as asked; what lies before
    the element being read is dropped, its lines and columns kept count of for error messages."""

    def __init__(self, chunks: Iterator[str]):
        self._chunks = chunks
        self.text, self.done = "", False
        self._lines_before = 0  # newlines in the text dropped so far
        self._column_before = 0  # characters after the last of them, dropped so far

    def more(self, keep_from: int) -> int:
        """Drop the text before keep_from and read at least as much again as is left (so an element
        longer than a chunk costs reads that double, not a rescan per chunk). Returns keep_from's
        new position; `done` once the file has no more."""
        dropped = self.text[:keep_from]
        newlines = dropped.count("\n")
        if newlines:
            self._lines_before += newlines
            self._column_before = len(dropped) - dropped.rfind("\n") - 1
        else:
            self._column_before += len(dropped)
        kept, wanted = self.text[keep_from:], max(len(self.text) - keep_from, 1)
        parts, got = [kept], 0
        while got < wanted:
            chunk = next(self._chunks, None)
            if chunk is None:
                self.done = True
                break
            parts.append(chunk)
            got += len(chunk)
        self.text = "".join(parts)
        return 0

    def where(self, pos: int) -> str:
        line_start = self.text.rfind("\n", 0, pos)
        line = self._lines_before + self.text.count("\n", 0, pos) + 1
        column = pos - line_start if line_start >= 0 else self._column_before + pos + 1
        return f"line {line}, column {column}"


class _Array:
    def __init__(self, chunks: Iterator[str]):
        self.window = _Window(chunks)
        self.pos = 0

    def _have(self, count: int = 1) -> bool:
        """At least `count` characters from pos on, reading more while the file has them."""
        window = self.window
        while len(window.text) - self.pos < count and not window.done:
            self.pos = window.more(self.pos)
        return len(window.text) - self.pos >= count

    def skip_space(self, space: re.Pattern = _SPACE) -> None:
        while True:
            self.pos = space.match(self.window.text, self.pos).end()
            if self.pos < len(self.window.text) or not self._have():
                return

    def next_char(self) -> str | None:
        self.skip_space()
        return self.window.text[self.pos] if self._have() else None

    def element(self, number: int) -> Element:
        """The element at pos (pos then just past it), or a stop."""
        window = self.window
        while True:
            text, start = window.text, self.pos
            try:
                value, end = _SCAN(text, start)
                failed = False
                if text[start] not in '{["':  # a scalar runs to the next separator: "12nul" is one bad element
                    scalar_end = _SCALAR.match(text, start).end()
                    failed, end = scalar_end != end, scalar_end
            except _PARSE_FAILURES:
                end, failed = value_end(text, start), True
            if end is None or end == len(text):  # cut by the window (a number "12" of "123" too)
                if not window.done:
                    self.pos = window.more(start)
                    continue
                return Element(number, stop=f"the file ends at element {number} (from {window.where(start)}), "
                                            "before the array's closing ']': an unclosed bracket or quote, or a "
                                            "cut-off file?")
            if end == start:
                return Element(number, stop=f"not valid JSON at {window.where(start)}: expected an element; "
                                            "the rest of the file was not read")
            self.pos = end
            if failed or _SURROGATE.search(text, start, end) is not None:
                return Element(number, text=text[start:end])
            return Element(number, value=value)


def array_elements(chunks: Iterator[str]) -> Iterator[Element]:
    """Each element of the array that `chunks` (the file's decoded text, in pieces) holds, then,
    if its structure breaks, one Element with `stop` saying where and why."""
    array = _Array(chunks)
    array.skip_space(_LEADING)
    if array.next_char() != "[":
        yield Element(1, stop="expected a JSON array of objects")
        return
    array.pos += 1
    number = 0
    while (char := array.next_char()) is not None and char != "]":
        number += 1
        element = array.element(number)
        yield element
        if element.stop is not None:
            return
        char = array.next_char()
        if char == ",":
            array.pos += 1
        elif char != "]":
            where = array.window.where(array.pos)
            yield Element(number + 1, stop=f"not valid JSON at {where}: expected ',' or ']' after element {number}; "
                                           "the rest of the file was not read")
            return
    if char is None:
        yield Element(number + 1, stop="the file ends before the array's closing ']'")
        return
    where = array.window.where(array.pos)
    array.pos += 1
    if array.next_char() is not None:
        yield Element(number + 1, stop=f"text after the array's closing ']' at {where} was not read")
