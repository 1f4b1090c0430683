"""YAML files that people write (commissioning files, simulator scenarios): parse, validate, and say
what is wrong and where.

Pure: no Django. Numbers are read as Decimal (never float), and every problem
names its path inside the file and, when known, its line:

    maple-court.yaml: chargers[0].connectors[1].max_current_a (line 23): input should be greater than 0
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

Path = tuple[str | int, ...]
Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str
    line: int | None = None

    def where(self) -> str:
        text = ""
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
        return text or "(top level)"

    def format(self, source: str) -> str:
        line = f" (line {self.line})" if self.line else ""
        return f"{source}: {self.where()}{line}: {self.message}"


class FileRefused(Exception):
    """A file was refused; ``problems`` says what and where."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(p.format(source) for p in problems))


# A commissioning file for a large building is a few hundred kilobytes; a scenario far less.
MAX_FILE_BYTES = 1024 * 1024
# Values after expanding aliases. A file of MAX_FILE_BYTES without aliases holds at most about
# half a million values ("[1,1,1,...]"), so this never refuses a plain file; it stops "billion
# laughs" files, whose few kilobytes of nested aliases expand to billions of values that
# validation would walk one by one.
MAX_VALUES = 1_000_000


class DecimalLoader(yaml.SafeLoader):
    """A safe loader that reads YAML floats as Decimal, so 0.8 stays exactly 0.8."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Decimal:
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    if text.lower() in {".nan", ".inf", "-.inf", "+.inf"}:
        raise yaml.constructor.ConstructorError(None, None, f"{text} is not a usable number", node.start_mark)
    return Decimal(text)


DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def size_problem(size: int) -> Problem | None:
    if size > MAX_FILE_BYTES:
        return Problem((), f"the file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,} bytes (1 MiB)")
    return None


def _expansion_problem(root: yaml.Node | None) -> Problem | None:
    """Count values as validation would see them (every alias expanded), stopping at MAX_VALUES."""
    count = 0
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_VALUES:
            return Problem(
                (), f"the file expands to more than {MAX_VALUES:,} values (nested aliases: *name); refused", 1
            )
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.append(key)
                stack.append(value)
    return None


def line_of(root: yaml.Node | None, path: Path) -> int | None:
    """The line where ``path`` is written in the file, or the closest enclosing line."""
    node = root
    line = node.start_mark.line + 1 if node is not None else None
    for part in path:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                return line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def with_lines(text: str, problems: list[Problem]) -> list[Problem]:
    """Fill in the line of each problem found after parsing (e.g. against the database)."""
    try:
        root = yaml.compose(text, Loader=DecimalLoader)
    except yaml.YAMLError:
        return problems
    return [Problem(p.path, p.message, p.line or line_of(root, p.path)) for p in problems]


def error_message(error: ErrorDetails, docs: str) -> str:
    """A pydantic error as a short sentence about the value at its place."""
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if error["type"] == "extra_forbidden":
        return f"is not a known key (see {docs})"
    if error["type"] == "missing":
        return "is required"
    if error["type"] == "string_pattern_mismatch" and "pattern" in error.get("ctx", {}):
        return f"{error.get('input')!r} has characters that are not allowed here"
    return message[0].lower() + message[1:] if message else message


def parse(
    text: str,
    model: type[Model],
    source: str,
    *,
    error: type[FileRefused],
    docs: str,
    mapping_hint: str,
    empty_ok: bool = False,
) -> tuple[Model, yaml.Node | None]:
    """Read ``text`` into ``model``; raise ``error`` listing every problem at once.

    Returns the node tree as well, so that later checks can give lines too.
    """
    too_big = size_problem(len(text.encode("utf-8")))
    if too_big is not None:
        raise error(source, [too_big])
    try:
        root = yaml.compose(text, Loader=DecimalLoader)  # aliases stay shared nodes here: cheap
        bomb = _expansion_problem(root)
        if bomb is not None:
            raise error(source, [bomb])
        data = yaml.load(text, Loader=DecimalLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark else None
        raise error(source, [Problem((), f"not valid YAML: {problem}", line)]) from None
    if data is None and empty_ok:
        data = {}
    if not isinstance(data, dict):
        raise error(source, [Problem((), mapping_hint, 1)])
    try:
        return model.model_validate(data), root
    except ValidationError as exc:
        problems = []
        for details in exc.errors():
            path = tuple(p for p in details["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            problems.append(Problem(path, error_message(details, docs), line_of(root, path)))
        raise error(source, problems) from None


def dump(data: dict[str, Any]) -> str:
    """Write a mapping as YAML, keeping Decimals exact and keys in the given order."""
    return yaml.dump(data, Dumper=_DecimalDumper, sort_keys=False, allow_unicode=True, width=120)


class _DecimalDumper(yaml.SafeDumper):
    pass


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.Node:
    if value == value.to_integral_value():
        return dumper.represent_int(int(value))
    return dumper.represent_scalar("tag:yaml.org,2002:float", format(value.normalize(), "f"))


_DecimalDumper.add_representer(Decimal, _represent_decimal)
