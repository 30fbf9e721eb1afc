"""Plain data over a pipe: the only thing that crosses between a sandboxed candidate and its grader.

Stdlib only: a copy of this file runs inside the sandbox (ssd/sandbox/serve.py) and another in the
trusted grader (ssd/sandbox/checker.py). One message is one line of JSON. Values are None, bool, int,
float, complex, str, bytes, range and list/tuple/dict/set/frozenset of them. An instance of a subclass
of one of these (Counter, OrderedDict, a namedtuple, an IntEnum) travels as its built-in base, without
its methods; an iterator (a generator, map, zip, ...) travels as its items and arrives as an iterator
over them, equal to nothing else, as it was. Anything else (an object with its own `__eq__`, a
function, a module) raises NotPlain. Decoding builds fresh built-in objects from JSON only, so whatever
the other side sends, the grader compares nothing but built-in values: a candidate cannot smuggle
behaviour (an always-equal object, a pickled callable) into the verdict.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 200  # nesting of containers
MAX_MESSAGE = 64 << 20  # bytes of one message
MAX_ITEMS = 1 << 20  # items drawn from an iterator
_SMALL_INT = 10**300  # larger ints travel as hex (str(int) is capped at 4300 digits since 3.11)
_CONTAINERS = {"tuple": tuple, "set": set, "frozenset": frozenset}


class NotPlain(TypeError):
    """A value that is not plain data (or a message that does not decode to plain data)."""


def encode(value: Any, depth: int = 0) -> Any:
    """A JSON-able form of a plain value; NotPlain for anything else (exact types: no subclasses)."""
    if depth > MAX_DEPTH:
        raise NotPlain(f"nested deeper than {MAX_DEPTH}")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value if -_SMALL_INT < value < _SMALL_INT else {"int": format(value, "x")}
    if kind is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if kind is list:
        return [encode(v, depth + 1) for v in value]
    if kind is tuple or kind is set or kind is frozenset:
        return {kind.__name__: [encode(v, depth + 1) for v in value]}
    if kind is dict:
        return {"dict": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    if kind is bytes:
        return {"bytes": value.hex()}
    if kind is complex:
        return {"complex": [encode(value.real), encode(value.imag)]}
    if kind is range:
        return {"range": [value.start, value.stop, value.step]}
    if hasattr(kind, "__next__") and hasattr(kind, "__iter__"):  # a generator, map, zip, ...: its items
        items = []
        for item in value:
            if len(items) == MAX_ITEMS:
                raise NotPlain(f"an iterator of more than {MAX_ITEMS} items")
            items.append(encode(item, depth + 1))
        return {"iter": items}
    for base in (int, float, str, bytes, tuple, list, set, frozenset, dict):  # Counter, namedtuple, IntEnum
        if isinstance(value, base):  # travels as its base type: its own methods (an __eq__) stay here
            return encode(base(value.items() if base is dict else value), depth + 1)
    raise NotPlain(f"{kind.__module__}.{kind.__qualname__} is not plain data")


def decode(data: Any, depth: int = 0) -> Any:
    """The plain value `data` (from json.loads) stands for; NotPlain if it is malformed."""
    if depth > MAX_DEPTH:
        raise NotPlain(f"nested deeper than {MAX_DEPTH}")
    kind = type(data)
    if data is None or kind in (bool, int, float, str):
        return data
    if kind is list:
        return [decode(v, depth + 1) for v in data]
    if kind is not dict or len(data) != 1:
        raise NotPlain(f"malformed value of type {kind.__name__}")
    ((tag, body),) = data.items()
    try:
        if tag in _CONTAINERS and type(body) is list:
            return _CONTAINERS[tag](decode(v, depth + 1) for v in body)
        if tag == "dict" and type(body) is list:
            return {decode(k, depth + 1): decode(v, depth + 1) for k, v in body}
        if tag == "int" and type(body) is str:
            return int(body, 16)
        if tag == "float" and body in ("nan", "inf", "-inf"):
            return float(body)
        if tag == "iter" and type(body) is list:  # an iterator again: equal to nothing but itself
            return iter([decode(v, depth + 1) for v in body])
        if tag == "range" and type(body) is list and all(type(v) is int for v in body):
            return range(*body)
        if tag == "complex" and type(body) is list and len(body) == 2:
            return complex(*(float(decode(v, depth + 1)) for v in body))
        if tag == "bytes" and type(body) is str:
            return bytes.fromhex(body)
    except (TypeError, ValueError) as e:  # unhashable keys or members, bad hex
        raise NotPlain(f"malformed {tag}: {e}") from None
    raise NotPlain(f"malformed value tagged {tag!r}")


def dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def read_message(stream: Any) -> dict[str, Any]:
    """The next message on a binary stream; EOFError if the other side is gone, NotPlain if malformed."""
    line = stream.readline(MAX_MESSAGE + 1)
    if not line:
        raise EOFError("the other side closed the pipe")
    if len(line) > MAX_MESSAGE or not line.endswith(b"\n"):
        raise NotPlain(f"message longer than {MAX_MESSAGE} bytes or cut short")
    try:
        message = json.loads(line)
    except (ValueError, RecursionError) as e:
        raise NotPlain(f"not JSON: {str(e)[:200]}") from None
    if type(message) is not dict:
        raise NotPlain("a message must be a JSON object")
    return message
