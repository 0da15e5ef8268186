"""JMS message selectors: parsed once per consumer, compiled into a predicate.

The language is JMS 1.1 §3.8's SQL-92 subset as ActiveMQ 5.17 accepts it:
``OR``/``AND``/``NOT`` with three-valued logic (``None`` is UNKNOWN), ``=``,
``<>``, ``<``, ``<=``, ``>``, ``>=``, ``[NOT] BETWEEN … AND …``, ``[NOT] IN (…)``,
``[NOT] LIKE '…' [ESCAPE '…']``, ``IS [NOT] NULL``, ``+ - * / %`` and unary
signs; string literals in single quotes (``''`` for a quote), exact numbers
(decimal, ``0x`` hex, ``0`` octal, an optional ``L``), approximate numbers
(``7E3``, ``-57.9E2``, ``7.``, ``.5``), ``TRUE``/``FALSE``. Keywords are
case-insensitive; identifiers are not.

Identifiers name JMS header fields (``JMSPriority``, ``JMSMessageID``,
``JMSXGroupID`` …, see :data:`_HEADERS`) or message properties; a property the
message lacks is NULL. A message matches when the selector is TRUE (FALSE and
UNKNOWN both leave it to other consumers).

What ActiveMQ does and JMS leaves open, done the same way here:

- a string compared with a number is converted when it reads as one (ActiveMQ does
  this for STOMP and MQTT, whose properties are all strings): ``n > 10`` holds for
  ``n: "11"``; a string that is no number makes the comparison FALSE;
- comparing values of other unlike types is FALSE (so ``<>`` of them is TRUE, as
  ActiveMQ's ``NOT (a = b)``), and any comparison with NULL is UNKNOWN;
- ``/`` divides as Java's doubles do (``7 / 2`` is 3.5, ``1 / 0`` is infinity);
- strings order lexicographically under ``<`` and the like.

:func:`compile_selector` refuses what does not parse, or does not yield a boolean,
with :class:`SelectorError` naming the column and the problem.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from sealmq.core.model import Message, id_text

__all__ = ["MAX_DEPTH", "MAX_SELECTOR_LENGTH", "SelectorError", "compile_selector"]

#: Longest selector accepted (characters): far above any real one, small enough that a
#: hostile one costs little to refuse.
MAX_SELECTOR_LENGTH = 16 * 1024
#: Deepest nesting of parentheses and operators, so parsing cannot exhaust the stack.
MAX_DEPTH = 100


class SelectorError(ValueError):
    """A selector that does not parse; ``column`` is 1-based."""

    def __init__(self, problem: str, column: int) -> None:
        super().__init__(f"invalid selector at column {column}: {problem}")
        self.problem = problem
        self.column = column


#: A compiled expression: the message in, its value out (None: NULL / UNKNOWN).
Evaluator = Callable[[Message], Any]

_KEYWORDS = frozenset(
    ("AND", "OR", "NOT", "BETWEEN", "IN", "LIKE", "ESCAPE", "IS", "NULL", "TRUE", "FALSE")
)

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<approx>(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?|[0-9]+[eE][+-]?[0-9]+[fFdD]?)
  | (?P<hex>0[xX][0-9a-fA-F]+[lL]?)
  | (?P<exact>[0-9]+[lL]?)
  | (?P<ident>[^\W\d]\w*)
  | (?P<op><>|<=|>=|[=<>+\-*/%(),])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # string, number, ident, keyword, op, end
    text: str
    value: Any
    column: int


def _tokens(text: str) -> list[_Token]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            if text[pos] == "'":
                raise SelectorError("unterminated string literal", pos + 1)
            raise SelectorError(f"unexpected character {text[pos]!r}", pos + 1)
        kind = m.lastgroup
        raw = m.group()
        column = pos + 1
        pos = m.end()
        if kind == "space":
            continue
        if kind == "string":
            out.append(_Token("string", raw, raw[1:-1].replace("''", "'"), column))
        elif kind == "approx":
            out.append(_Token("number", raw, float(raw.rstrip("fFdD")), column))
        elif kind == "hex":
            out.append(_Token("number", raw, int(raw.rstrip("lL")[2:], 16), column))
        elif kind == "exact":
            digits = raw.rstrip("lL")
            # Java's integer literal syntax: a leading 0 means octal.
            if len(digits) > 1 and digits[0] == "0":
                if any(d in "89" for d in digits):
                    raise SelectorError(f"{raw!r} is not an octal number", column)
                value = int(digits, 8)
            else:
                value = int(digits)
            out.append(_Token("number", raw, value, column))
        elif kind == "ident":
            upper = raw.upper()
            if upper in _KEYWORDS:
                out.append(_Token("keyword", upper, None, column))
            else:
                out.append(_Token("ident", raw, raw, column))
        else:
            out.append(_Token("op", raw, None, column))
    out.append(_Token("end", "", None, len(text) + 1))
    return out


# ----------------------------------------------------------------------- values


def _is_number(value: Any) -> bool:
    return (type(value) is not bool) and isinstance(value, int | float)


_LONG = re.compile(r"[+-]?[0-9]+")
_DOUBLE = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[fFdD]?|NaN|Infinity)"
)


def _as_number(value: str) -> int | float | None:
    """A string as Java's ``Long.valueOf`` then ``Double.valueOf`` read it, or None."""
    if _LONG.fullmatch(value):
        return int(value)
    text = value.strip()  # Double.valueOf allows surrounding blanks, Long.valueOf does not
    if _DOUBLE.fullmatch(text):
        return float(text.rstrip("fFdD").replace("Infinity", "inf"))
    return None


def _comparable(left: Any, right: Any) -> tuple[Any, Any] | None:
    """The two values to compare, promoted; None when they are of unlike types."""
    if _is_number(left):
        if _is_number(right):
            return left, right
        if isinstance(right, str):
            converted = _as_number(right)
            return None if converted is None else (left, converted)
        return None
    if isinstance(left, str):
        if isinstance(right, str):
            return left, right
        if _is_number(right):
            converted = _as_number(left)
            return None if converted is None else (converted, right)
        return None
    if type(left) is bool and type(right) is bool:
        return left, right
    return None


def _equal(left: Any, right: Any) -> bool | None:
    if left is None or right is None:
        return None
    pair = _comparable(left, right)
    return pair is not None and pair[0] == pair[1]


def _ordered(test: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool | None]:
    def compare(left: Any, right: Any) -> bool | None:
        if left is None or right is None:
            return None
        pair = _comparable(left, right)
        if pair is None or type(pair[0]) is bool:
            return False
        return test(pair[0], pair[1])

    return compare


_COMPARISONS: dict[str, Callable[[Any, Any], bool | None]] = {
    "=": _equal,
    "<>": lambda a, b: _not(_equal(a, b)),
    "<": _ordered(lambda a, b: a < b),
    "<=": _ordered(lambda a, b: a <= b),
    ">": _ordered(lambda a, b: a > b),
    ">=": _ordered(lambda a, b: a >= b),
}


def _divide(left: Any, right: Any) -> float:
    if right == 0:
        if left == 0 or math.isnan(left):
            return math.nan
        return math.copysign(math.inf, left) * math.copysign(1.0, right)
    return float(left) / float(right)


def _modulo(left: Any, right: Any) -> Any:
    if right == 0:
        return math.nan
    if isinstance(left, int) and isinstance(right, int):
        return int(math.fmod(left, right))  # Java's % keeps the dividend's sign
    return math.fmod(left, right)


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": _divide,
    "%": _modulo,
}


def _not(value: bool | None) -> bool | None:
    return None if value is None else not value


def _truth(value: Any) -> bool | None:
    """A value in a boolean position: TRUE, FALSE or UNKNOWN (anything not a boolean)."""
    return value if type(value) is bool else None


def _like_pattern(pattern: str, escape: str | None, column: int) -> re.Pattern[str]:
    parts = []
    chars = iter(pattern)
    for ch in chars:
        if escape is not None and ch == escape:
            following = next(chars, None)
            if following is None:
                raise SelectorError("LIKE pattern ends with its escape character", column)
            parts.append(re.escape(following))
        elif ch == "%":
            parts.append(".*")
        elif ch == "_":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


# ----------------------------------------------------------------------- header fields


def _delivery_mode(m: Message) -> str:
    return "PERSISTENT" if m.persistent else "NON_PERSISTENT"


def _optional_id(value: Any) -> str | None:
    return None if value is None else id_text(value)


#: JMS and ActiveMQ header identifiers and how each reads a message.
_HEADERS: dict[str, Callable[[Message], Any]] = {
    "JMSMessageID": lambda m: m.message_id,
    "JMSPriority": lambda m: m.priority,
    "JMSTimestamp": lambda m: m.timestamp,
    "JMSExpiration": lambda m: m.expiration,
    "JMSDeliveryMode": _delivery_mode,
    "JMSCorrelationID": lambda m: _optional_id(m.correlation_id),
    "JMSType": lambda m: m.type,
    "JMSDestination": lambda m: str(m.destination),
    "JMSReplyTo": lambda m: None if m.reply_to is None else str(m.reply_to),
    "JMSRedelivered": lambda m: m.redelivery_count > 0,
    "JMSXDeliveryCount": lambda m: m.redelivery_count + 1,
    "JMSXGroupID": lambda m: m.group_id,
    "JMSXGroupSeq": lambda m: m.group_seq,
    "JMSXUserID": lambda m: m.user_id,
}


def _property(name: str) -> Evaluator:
    header = _HEADERS.get(name)
    if header is not None:
        return header

    def read(message: Message) -> Any:
        value = message.properties.get(name)
        if value is None or isinstance(value, bool | int | float | str):
            return value
        return None  # bytes, UUIDs, decimals: nothing a selector can compare

    return read


# ----------------------------------------------------------------------- the parser

# What an expression is known to yield, for the checks the grammar implies.
_BOOL, _NUMBER, _STRING, _ANY = "boolean", "number", "string", "any"


@dataclass(slots=True)
class _Node:
    evaluate: Evaluator
    kind: str
    column: int
    #: The value, when the node is a literal (LIKE patterns and IN lists need them).
    constant: Any = None
    is_constant: bool = False


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = _tokens(text)
        self.at = 0
        self.depth = 0

    # -- tokens

    @property
    def token(self) -> _Token:
        return self.tokens[self.at]

    def take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def keyword(self, *words: str) -> bool:
        token = self.token
        return token.kind == "keyword" and token.text in words

    def op(self, *ops: str) -> bool:
        token = self.token
        return token.kind == "op" and token.text in ops

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            self.fail(f"expected {word}")
        self.take()

    def expect_op(self, op: str) -> None:
        if not self.op(op):
            self.fail(f"expected {op!r}")
        self.take()

    def fail(self, problem: str) -> NoReturn:
        token = self.token
        found = "the end of the selector" if token.kind == "end" else repr(token.text)
        raise SelectorError(f"{problem}, found {found}", token.column)

    def enter(self, column: int) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SelectorError(f"nested more than {MAX_DEPTH} deep", column)

    # -- grammar, lowest precedence first

    def selector(self) -> Evaluator:
        node = self.boolean(self.disjunction())
        if self.token.kind != "end":
            self.fail("expected an operator or the end of the selector")
        return node.evaluate

    def boolean(self, node: _Node) -> _Node:
        if node.kind not in (_BOOL, _ANY):
            raise SelectorError(f"a {node.kind} where a condition is needed", node.column)
        return node

    def disjunction(self) -> _Node:
        left = self.conjunction()
        while self.keyword("OR"):
            self.take()
            left = _or(self.boolean(left), self.boolean(self.conjunction()))
        return left

    def conjunction(self) -> _Node:
        left = self.negation()
        while self.keyword("AND"):
            self.take()
            left = _and(self.boolean(left), self.boolean(self.negation()))
        return left

    def negation(self) -> _Node:
        if self.keyword("NOT"):
            column = self.take().column
            self.enter(column)
            inner = self.boolean(self.negation())
            self.depth -= 1
            evaluate = inner.evaluate
            return _Node(lambda m: _not(_truth(evaluate(m))), _BOOL, column)
        return self.comparison()

    def comparison(self) -> _Node:
        left = self.additive()
        token = self.token
        if token.kind == "op" and token.text in _COMPARISONS:
            self.take()
            right = self.additive()
            return _compare(_COMPARISONS[token.text], left, right)
        if self.keyword("IS"):
            self.take()
            negate = self.keyword("NOT")
            if negate:
                self.take()
            self.expect_keyword("NULL")
            value = left.evaluate
            if negate:
                return _Node(lambda m: value(m) is not None, _BOOL, left.column)
            return _Node(lambda m: value(m) is None, _BOOL, left.column)
        negate = False
        if self.keyword("NOT") and self.tokens[self.at + 1].kind == "keyword":
            self.take()
            negate = True
            if not self.keyword("BETWEEN", "IN", "LIKE"):
                self.fail("expected BETWEEN, IN or LIKE after NOT")
        if self.keyword("BETWEEN"):
            self.take()
            low = self.additive()
            self.expect_keyword("AND")
            high = self.additive()
            node = _and(
                _compare(_COMPARISONS[">="], left, low), _compare(_COMPARISONS["<="], left, high)
            )
        elif self.keyword("IN"):
            self.take()
            node = self.in_list(left)
        elif self.keyword("LIKE"):
            self.take()
            node = self.like(left)
        else:
            return left
        if negate:
            evaluate = node.evaluate
            return _Node(lambda m: _not(evaluate(m)), _BOOL, left.column)
        return node

    def in_list(self, left: _Node) -> _Node:
        self.expect_op("(")
        values = []
        while True:
            # JMS lists strings only; numbers (signed) are taken too, as a superset.
            sign = 1
            if self.op("+", "-") and self.tokens[self.at + 1].kind == "number":
                sign = -1 if self.take().text == "-" else 1
            token = self.take()
            if token.kind not in ("string", "number"):
                self.at -= 1
                self.fail("expected a string or number literal in the IN list")
            values.append(token.value * sign if token.kind == "number" else token.value)
            if self.op(")"):
                self.take()
                break
            self.expect_op(",")
        evaluate = left.evaluate
        choices = tuple(values)

        def member(message: Message) -> bool | None:
            value = evaluate(message)
            if value is None:
                return None
            return any(_equal(value, choice) for choice in choices)

        return _Node(member, _BOOL, left.column)

    def like(self, left: _Node) -> _Node:
        token = self.take()
        if token.kind != "string":
            self.at -= 1
            self.fail("expected a string literal after LIKE")
        escape = None
        if self.keyword("ESCAPE"):
            self.take()
            mark = self.take()
            if mark.kind != "string" or len(mark.value) != 1:
                self.at -= 1
                self.fail("expected a one-character string after ESCAPE")
            escape = mark.value
        pattern = _like_pattern(token.value, escape, token.column)
        evaluate = left.evaluate

        def like(message: Message) -> bool | None:
            value = evaluate(message)
            if value is None:
                return None
            return isinstance(value, str) and pattern.fullmatch(value) is not None

        return _Node(like, _BOOL, left.column)

    def additive(self) -> _Node:
        left = self.multiplicative()
        while self.op("+", "-"):
            op = self.take().text
            left = _arithmetic(op, left, self.multiplicative())
        return left

    def multiplicative(self) -> _Node:
        left = self.unary()
        while self.op("*", "/", "%"):
            op = self.take().text
            left = _arithmetic(op, left, self.unary())
        return left

    def unary(self) -> _Node:
        if self.op("+", "-"):
            token = self.take()
            self.enter(token.column)
            inner = self.unary()
            self.depth -= 1
            if inner.kind not in (_NUMBER, _ANY):
                raise SelectorError(f"a sign before a {inner.kind}", token.column)
            if token.text == "+":
                return inner
            if inner.is_constant:
                return _constant(-inner.constant, token.column)
            evaluate = inner.evaluate

            def negative(message: Message) -> Any:
                value = evaluate(message)
                return -value if _is_number(value) else None

            return _Node(negative, _NUMBER, token.column)
        return self.primary()

    def primary(self) -> _Node:
        token = self.take()
        if token.kind == "number" or token.kind == "string":
            return _constant(token.value, token.column)
        if token.kind == "keyword" and token.text in ("TRUE", "FALSE"):
            return _constant(token.text == "TRUE", token.column)
        if token.kind == "keyword" and token.text == "NULL":
            return _Node(lambda m: None, _ANY, token.column, None, True)
        if token.kind == "ident":
            return _Node(_property(token.value), _ANY, token.column)
        if token.kind == "op" and token.text == "(":
            self.enter(token.column)
            inner = self.disjunction()
            self.depth -= 1
            self.expect_op(")")
            return inner
        self.at -= 1
        self.fail("expected a value, an identifier or '('")


def _constant(value: Any, column: int) -> _Node:
    kind = _BOOL if type(value) is bool else _STRING if isinstance(value, str) else _NUMBER
    return _Node(lambda m: value, kind, column, value, True)


def _compare(test: Callable[[Any, Any], bool | None], left: _Node, right: _Node) -> _Node:
    lhs, rhs = left.evaluate, right.evaluate
    if right.is_constant:
        constant = right.constant
        return _Node(lambda m: test(lhs(m), constant), _BOOL, left.column)
    return _Node(lambda m: test(lhs(m), rhs(m)), _BOOL, left.column)


def _arithmetic(op: str, left: _Node, right: _Node) -> _Node:
    for side in (left, right):
        if side.kind not in (_NUMBER, _ANY):
            raise SelectorError(f"a {side.kind} in arithmetic", side.column)
    apply = _ARITHMETIC[op]
    lhs, rhs = left.evaluate, right.evaluate

    def arithmetic(message: Message) -> Any:
        a = lhs(message)
        b = rhs(message)
        if not (_is_number(a) and _is_number(b)):
            return None
        return apply(a, b)

    return _Node(arithmetic, _NUMBER, left.column)


def _and(left: _Node, right: _Node) -> _Node:
    lhs, rhs = left.evaluate, right.evaluate

    def conjunction(message: Message) -> bool | None:
        a = _truth(lhs(message))
        if a is False:
            return False
        b = _truth(rhs(message))
        if b is False:
            return False
        return None if a is None or b is None else True

    return _Node(conjunction, _BOOL, left.column)


def _or(left: _Node, right: _Node) -> _Node:
    lhs, rhs = left.evaluate, right.evaluate

    def disjunction(message: Message) -> bool | None:
        a = _truth(lhs(message))
        if a is True:
            return True
        b = _truth(rhs(message))
        if b is True:
            return True
        return None if a is None or b is None else False

    return _Node(disjunction, _BOOL, left.column)


def compile_selector(selector: str) -> Callable[[Message], bool]:
    """The predicate of ``selector``: True for the messages it selects.

    Raises :class:`SelectorError` for a selector that does not parse, is longer
    than :data:`MAX_SELECTOR_LENGTH`, or does not yield a boolean.
    """
    if len(selector) > MAX_SELECTOR_LENGTH:
        raise SelectorError(f"longer than {MAX_SELECTOR_LENGTH} characters", 1)
    if not selector.strip():
        raise SelectorError("empty selector", 1)
    evaluate = _Parser(selector).selector()

    def matches(message: Message) -> bool:
        try:
            return evaluate(message) is True
        except (ArithmeticError, TypeError, ValueError):
            return False  # e.g. an overflow in arithmetic: the message is not selected

    return matches
