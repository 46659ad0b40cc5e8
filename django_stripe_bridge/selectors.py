"""Message selectors: a small subset of SQL-92 conditional expressions.

A selector chooses which messages a subscriber receives by testing the message headers,
the way JMS message selectors do. It is parsed once into a tree of closures; nothing is
ever passed to ``eval`` or to a database. This module does not import Django.

Grammar (keywords are case-insensitive; ``[...]`` is optional, ``{...}`` repeats):

    selector   := [ or_expr ]                      -- empty: every message matches
    or_expr    := and_expr { OR and_expr }
    and_expr   := not_expr { AND not_expr }
    not_expr   := { NOT } primary
    primary    := "(" or_expr ")" | value [ test ]
    test       := cmp_op value
                | [NOT] IN "(" literal { "," literal } ")"
                | [NOT] LIKE string [ ESCAPE string ]
                | [NOT] BETWEEN value AND value
                | IS [NOT] NULL
    value      := identifier | string | number | TRUE | FALSE | NULL
    cmp_op     := "=" | "<>" | "!=" | "<" | "<=" | ">" | ">="

Identifiers are ``[A-Za-z_][A-Za-z0-9_]*``; strings are single-quoted with ``''`` for a
quote; numbers are ``12``, ``-3``, ``4.5``, ``.5``, ``1.5E3`` (a sign must touch the digits).
NUL and lone UTF-16 surrogates are refused anywhere, strings included.
A value standing alone must be a header name or ``TRUE``/``FALSE``.

Evaluation uses SQL three-valued logic: a missing header, a header whose value is None,
``NULL``, and any comparison of mismatched types are *unknown*; a message matches only
when the whole selector is TRUE. Strings and booleans support ``=`` and ``<>`` only;
ordering and ``BETWEEN`` apply to numbers; ``LIKE`` applies to strings; ``IN`` lists hold
strings only or numbers only.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from enum import Enum
from typing import Any, NamedTuple

__all__ = [
    "MAX_DEPTH",
    "MAX_IN_ITEMS",
    "MAX_SELECTOR_LENGTH",
    "Selector",
    "SelectorError",
    "compile_selector",
    "pin_id",
]

MAX_SELECTOR_LENGTH = 4096
"""Longest selector accepted, in characters as given (surrounding whitespace included)."""
MAX_DEPTH = 32
"""Deepest nesting accepted; each open parenthesis and each ``NOT`` is one level."""
MAX_IN_ITEMS = 1000
#: Headers whose values a selector can pin (``pinned_values``): who may subscribe depends
#: on them (a transaction, a connected account).
PINNABLE_HEADERS = ("id", "account")
"""Most items accepted in one ``IN`` list."""

Headers = Mapping[str, object]
Truth = bool | None  # None stands for SQL's UNKNOWN
Test = Callable[[Headers], Truth]
Getter = Callable[[Headers], object]

_KEYWORDS = frozenset(
    {"AND", "OR", "NOT", "IN", "LIKE", "ESCAPE", "BETWEEN", "IS", "NULL", "TRUE", "FALSE"}
)
_TOKEN_RE = re.compile(
    r"""(?P<space>\s+)
      | (?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
      | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
      | (?P<op><>|!=|<=|>=|[=<>])
      | (?P<punct>[(),])""",
    re.VERBOSE,
)
#: Characters refused anywhere, string literals included: NUL (PostgreSQL cannot compare a
#: pinned id holding one) and lone UTF-16 surrogates (not Unicode: nothing can encode them).
_FORBIDDEN_CHARACTER = re.compile("[\x00\ud800-\udfff]")
_CONSTANTS: dict[str, bool | None] = {"TRUE": True, "FALSE": False, "NULL": None}
_NUMERIC_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class SelectorError(ValueError):
    """A selector that cannot be compiled; ``position`` is the 1-based column at fault."""

    def __init__(self, reason: str, position: int) -> None:
        super().__init__(f"{reason} at column {position}")
        self.reason = reason
        self.position = position

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.reason, self.position))


class _Tok(NamedTuple):
    kind: str  # "word" (identifier), "kw", "str", "num", "op", "(", ")", ",", "eof"
    value: Any  # keyword in upper case, identifier, decoded string, number, operator
    raw: str
    col: int

    def describe(self) -> str:
        if self.kind == "eof":
            return "end of input"
        raw = self.raw if len(self.raw) <= 40 else self.raw[:37] + "..."
        return f"token {raw}" if self.kind == "str" else f"token '{raw}'"


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos, end = 0, len(text)
    while pos < end:
        if text[pos] == "'":
            chunks, scan = [], pos + 1
            while True:
                close = text.find("'", scan)
                if close < 0:
                    raise SelectorError("unterminated string", pos + 1)
                chunks.append(text[scan:close])
                if not text.startswith("'", close + 1):
                    break
                chunks.append("'")
                scan = close + 2
            tokens.append(_Tok("str", "".join(chunks), text[pos : close + 1], pos + 1))
            pos = close + 1
            continue
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise SelectorError(f"unexpected character {text[pos]!r}", pos + 1)
        raw, group = match.group(), match.lastgroup
        if group == "num":
            number = float(raw) if any(c in raw for c in ".eE") else int(raw)
            tokens.append(_Tok("num", number, raw, pos + 1))
        elif group == "word":
            upper = raw.upper()
            kind = "kw" if upper in _KEYWORDS else "word"
            tokens.append(_Tok(kind, upper if kind == "kw" else raw, raw, pos + 1))
        elif group == "op":
            tokens.append(_Tok("op", "<>" if raw == "!=" else raw, raw, pos + 1))
        elif group == "punct":
            tokens.append(_Tok(raw, raw, raw, pos + 1))
        pos = match.end()
    tokens.append(_Tok("eof", None, "", end + 1))
    return tokens


def _kind(value: object) -> str | None:
    """The comparison type of a value: 'bool', 'str', 'num', or None (unknown)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "str"
    if isinstance(value, int | float):
        return None if value != value else "num"  # NaN is unknown
    if isinstance(value, Decimal):
        return None if value.is_nan() else "num"
    return None


def _compare(op: str, left: object, right: object) -> Truth:
    kind = _kind(left)
    if kind is None or kind != _kind(right):
        return None
    if kind == "num":
        return _NUMERIC_OPS[op](left, right)
    if op == "=":
        return left == right
    return left != right if op == "<>" else None


def _as_truth(value: object) -> Truth:
    """A value standing alone as a condition: booleans are themselves, all else unknown."""
    return value if isinstance(value, bool) else None


def _junction(tests: Sequence[Test], decisive: bool) -> Test:
    """AND (``decisive=False``) or OR (``decisive=True``) in three-valued logic.

    One operand with the decisive value decides; else any unknown makes the whole unknown.
    """
    if len(tests) == 1:
        return tests[0]

    def test(headers: Headers) -> Truth:
        result: Truth = not decisive
        for each in tests:
            outcome = each(headers)
            if outcome is decisive:
                return decisive
            if outcome is None:
                result = None
        return result

    return test


def _all(tests: Sequence[Test]) -> Test:
    """AND of ``tests``."""
    return _junction(tests, decisive=False)


def _any(tests: Sequence[Test]) -> Test:
    """OR of ``tests``."""
    return _junction(tests, decisive=True)


def _negate(inner: Test) -> Test:
    def test(headers: Headers) -> Truth:
        outcome = inner(headers)
        return None if outcome is None else not outcome

    return test


class _Wild(Enum):
    ONE = "_"
    MANY = "%"


_WILDCARDS = {wild.value: wild for wild in _Wild}


def _like_pattern(pattern: str, escape: str | None, col: int) -> tuple[str | _Wild, ...]:
    items: list[str | _Wild] = []
    chars = iter(pattern)
    for char in chars:
        if char == escape:
            literal = next(chars, None)
            if literal is None:
                raise SelectorError("LIKE pattern ends with its escape character", col)
            items.append(literal)
        elif char in _WILDCARDS:
            wild = _WILDCARDS[char]
            if not (wild is _Wild.MANY and items and items[-1] is _Wild.MANY):
                items.append(wild)
        else:
            items.append(char)
    return tuple(items)


def _like(items: tuple[str | _Wild, ...], text: str) -> bool:
    """Match with one backtracking point (the last ``%``): O(len(items) * len(text))."""
    p = t = 0
    star_p, star_t = -1, 0
    while t < len(text):
        item = items[p] if p < len(items) else None
        if item is _Wild.MANY:
            star_p, star_t, p = p, t, p + 1
        elif item is _Wild.ONE or (item is not None and item == text[t]):
            p, t = p + 1, t + 1
        elif star_p >= 0:
            star_t += 1
            p, t = star_p + 1, star_t
        else:
            return False
    while p < len(items) and items[p] is _Wild.MANY:
        p += 1
    return p == len(items)


class _Value(NamedTuple):
    get: Getter
    tok: _Tok

    @property
    def pinnable(self) -> str | None:
        """The header's name if it is one a selector can pin (``id``, ``account``)."""
        if self.tok.kind == "word" and self.tok.value in PINNABLE_HEADERS:
            return str(self.tok.value)
        return None


#: Pinnable header → the values a matching message must have one of (absent: not pinned).
Pins = Mapping[str, frozenset[str]]
_NO_PINS: Pins = {}


class _Cond(NamedTuple):
    test: Test
    pins: Pins


def _pins_of_or(conds: Sequence[_Cond]) -> Pins:
    """OR unites: a header stays pinned only if every branch pins it."""
    union: dict[str, frozenset[str]] = {}
    for name in PINNABLE_HEADERS:
        values: frozenset[str] = frozenset()
        for cond in conds:
            if name not in cond.pins:
                break
            values |= cond.pins[name]
        else:
            union[name] = values
    return union


def _pins_of_and(conds: Sequence[_Cond]) -> Pins:
    """AND intersects: a header is pinned if any term pins it."""
    common: dict[str, frozenset[str]] = {}
    for cond in conds:
        for name, values in cond.pins.items():
            common[name] = common[name] & values if name in common else values
    return common


class _Parser:
    """Recursive descent over the token list, compiling each rule straight to closures."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    def peek(self, ahead: int = 0) -> _Tok:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def next(self) -> _Tok:
        tok = self.peek()
        self.index += 1
        return tok

    def at(self, kind: str, value: object = None, ahead: int = 0) -> bool:
        tok = self.peek(ahead)
        return tok.kind == kind and (value is None or tok.value == value)

    def expect(self, kind: str, value: object = None) -> _Tok:
        if not self.at(kind, value):
            raise self.unexpected()
        return self.next()

    def unexpected(self) -> SelectorError:
        tok = self.peek()
        return SelectorError(f"unexpected {tok.describe()}", tok.col)

    def enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SelectorError(f"nesting deeper than {MAX_DEPTH} levels", tok.col)

    def parse(self) -> _Cond:
        cond = self.or_expr()
        if not self.at("eof"):
            raise self.unexpected()
        return cond

    def or_expr(self) -> _Cond:
        conds = [self.and_expr()]
        while self.at("kw", "OR"):
            self.next()
            conds.append(self.and_expr())
        return _Cond(_any([c.test for c in conds]), _pins_of_or(conds))

    def and_expr(self) -> _Cond:
        conds = [self.not_expr()]
        while self.at("kw", "AND"):
            self.next()
            conds.append(self.not_expr())
        return _Cond(_all([c.test for c in conds]), _pins_of_and(conds))

    def not_expr(self) -> _Cond:
        nots = 0
        while self.at("kw", "NOT"):
            self.enter(self.next())
            nots += 1
        cond = self.primary()
        if not nots:
            return cond
        self.depth -= nots
        return _Cond(_negate(cond.test) if nots % 2 else cond.test, _NO_PINS)

    def primary(self) -> _Cond:
        if self.at("("):
            self.enter(self.next())
            cond = self.or_expr()
            self.expect(")")
            self.depth -= 1
            return cond
        return self.predicate(self.value())

    def value(self) -> _Value:
        tok = self.next()
        if tok.kind == "word":
            name = tok.value
            return _Value(lambda headers: headers.get(name), tok)
        if tok.kind in ("str", "num") or (tok.kind == "kw" and tok.value in _CONSTANTS):
            constant = tok.value if tok.kind != "kw" else _CONSTANTS[tok.value]
            return _Value(lambda headers: constant, tok)
        self.index -= 1
        raise self.unexpected()

    def predicate(self, left: _Value) -> _Cond:
        get = left.get
        if self.at("op"):
            op = self.next().value
            right = self.value()
            get_right = right.get
            pins: Pins = _NO_PINS
            if op == "=" and left.pinnable and right.tok.kind == "str":
                pins = {left.pinnable: frozenset({right.tok.value})}
            elif op == "=" and right.pinnable and left.tok.kind == "str":
                pins = {right.pinnable: frozenset({left.tok.value})}
            return _Cond(lambda h: _compare(op, get(h), get_right(h)), pins)
        if self.at("kw", "IS"):
            self.next()
            negated = self.at("kw", "NOT")
            if negated:
                self.next()
            self.expect("kw", "NULL")
            return _Cond(lambda h: (get(h) is None) is not negated, _NO_PINS)
        negated = self.at("kw", "NOT") and any(
            self.at("kw", word, ahead=1) for word in ("IN", "LIKE", "BETWEEN")
        )
        if negated:
            self.next()
        if self.at("kw", "IN"):
            cond = self.in_list(left)
        elif self.at("kw", "LIKE"):
            cond = self.like(left)
        elif self.at("kw", "BETWEEN"):
            self.next()
            low = self.value().get
            self.expect("kw", "AND")
            high = self.value().get
            above: Test = lambda h: _compare(">=", get(h), low(h))  # noqa: E731
            below: Test = lambda h: _compare("<=", get(h), high(h))  # noqa: E731
            cond = _Cond(_all([above, below]), _NO_PINS)
        elif left.tok.kind == "word" or (left.tok.kind == "kw" and left.tok.value != "NULL"):
            return _Cond(lambda h: _as_truth(get(h)), _NO_PINS)
        else:
            raise self.unexpected()
        return _Cond(_negate(cond.test), _NO_PINS) if negated else cond

    def in_list(self, left: _Value) -> _Cond:
        self.next()
        self.expect("(")
        items: list[_Tok] = []
        while True:
            if not (self.at("str") or self.at("num")):
                raise self.unexpected()
            items.append(self.next())
            if len(items) > MAX_IN_ITEMS:
                raise SelectorError(f"more than {MAX_IN_ITEMS} items in IN list", items[-1].col)
            if items[-1].kind != items[0].kind:
                raise SelectorError("IN list mixes strings and numbers", items[-1].col)
            if self.at(")"):
                break
            self.expect(",")
        self.next()
        kind = "str" if items[0].kind == "str" else "num"
        choices = frozenset(tok.value for tok in items)
        get = left.get

        def test(headers: Headers) -> Truth:
            value = get(headers)
            return value in choices if _kind(value) == kind else None

        name = left.pinnable
        pins = {name: choices} if kind == "str" and name else _NO_PINS
        return _Cond(test, pins)

    def like(self, left: _Value) -> _Cond:
        self.next()
        pattern = self.expect("str")
        escape = None
        if self.at("kw", "ESCAPE"):
            self.next()
            escape_tok = self.expect("str")
            if len(escape_tok.value) != 1:
                raise SelectorError("ESCAPE needs exactly one character", escape_tok.col)
            escape = escape_tok.value
        items = _like_pattern(pattern.value, escape, pattern.col)
        get = left.get

        def test(headers: Headers) -> Truth:
            value = get(headers)
            return _like(items, value) if isinstance(value, str) else None

        return _Cond(test, _NO_PINS)


def _match_all(headers: Headers) -> Truth:
    return True


class Selector:
    """A compiled selector: test headers with ``matches()``; immutable and hashable."""

    __slots__ = ("_parts", "_pins", "_test", "_text")
    _text: str
    _test: Test
    _pins: Pins
    _parts: tuple[str, Selector] | None  # (id, selector) of a pin_id() result

    def __init__(self, text: str | None = None) -> None:
        if text is not None and not isinstance(text, str):
            raise SelectorError("a selector must be a string", 1)
        source = text or ""
        if len(source) > MAX_SELECTOR_LENGTH:
            raise SelectorError(
                f"selector longer than {MAX_SELECTOR_LENGTH} characters", MAX_SELECTOR_LENGTH + 1
            )
        stripped = source.strip()
        forbidden = _FORBIDDEN_CHARACTER.search(source)
        if forbidden:
            raise SelectorError(
                f"unexpected character {forbidden.group()!r}", forbidden.start() + 1
            )
        cond = _Parser(source).parse() if stripped else _Cond(_match_all, _NO_PINS)
        object.__setattr__(self, "_text", stripped)
        object.__setattr__(self, "_test", cond.test)
        object.__setattr__(self, "_pins", cond.pins)
        object.__setattr__(self, "_parts", None)

    @property
    def text(self) -> str:
        """The selector as given, without surrounding whitespace ('' for a broad one)."""
        return self._text

    @property
    def pinned_ids(self) -> frozenset[str] | None:
        """The ``id`` values a matching message must have, or None if ``id`` is not pinned."""
        return self._pins.get("id")

    @property
    def pinned_accounts(self) -> frozenset[str] | None:
        """The ``account`` values a matching message must have, or None if not pinned."""
        return self._pins.get("account")

    def pinned_values(self, header: str) -> frozenset[str] | None:
        """The values of ``header`` (one of ``PINNABLE_HEADERS``) a matching message
        must have one of, or None if the selector does not pin it."""
        return self._pins.get(header)

    def matches(self, headers: Headers) -> bool:
        """Whether the selector is TRUE for these headers (unknown counts as no match)."""
        return self._test(headers) is True

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __reduce__(self) -> tuple[Any, ...]:
        if self._parts is not None:
            return (pin_id, self._parts)
        return (type(self), (self._text,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Selector) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._text!r})"


def compile_selector(text: str | None) -> Selector:
    """Parse ``text`` into a ``Selector``; raise ``SelectorError`` if it is invalid.

    None, an empty string, or whitespace gives a broad selector that matches every message.
    """
    return Selector(text)


def pin_id(transaction_id: str, selector: Selector | None = None) -> Selector:
    """``selector`` narrowed to one transaction: ``id = '<transaction_id>' AND (<selector>)``.

    This is what a subscription to the ``stripe/<transaction id>`` channel uses. The limits
    apply to ``selector`` alone (it was checked when compiled), so what compiles on its own
    compiles narrowed too, although the combined text is one level deeper and longer.
    """
    pin = Selector("id = '{}'".format(transaction_id.replace("'", "''")))
    if selector is None or not selector.text:
        return pin
    pins = _pins_of_and([_Cond(pin._test, pin._pins), _Cond(selector._test, selector._pins)])
    narrowed = object.__new__(Selector)
    for name, value in (
        ("_text", f"{pin.text} AND ({selector.text})"),
        ("_test", _all([pin._test, selector._test])),
        ("_pins", pins),
        ("_parts", (transaction_id, selector)),
    ):
        object.__setattr__(narrowed, name, value)
    return narrowed
