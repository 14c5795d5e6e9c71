"""Read the admin's YAML and keep where every key came from.

PyYAML's composer gives each node a start mark (line, column); we walk the node
tree once and record the mark of every mapping key and sequence item under its
path, so that a validation error on ``("menus", "main", "choices", 0, "action")``
can name ``config/hotline.yaml:42``. Duplicate keys, which plain ``yaml.safe_load``
silently collapses, are an error here: an admin who writes the same queue twice
must hear about it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a config file, precise enough to fix without searching."""

    file: str
    line: int | None
    key: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(Exception):
    """Raised with every issue found, never just the first."""

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


@dataclass
class SourceMap:
    file: str
    marks: dict[Path_, int]

    def line_of(self, path: Path_) -> int | None:
        """Line of the deepest known ancestor of ``path`` (1-based)."""
        p = tuple(path)
        while True:
            if p in self.marks:
                return self.marks[p]
            if not p:
                return None
            p = p[:-1]

    def issue(self, path: Path_, message: str) -> ConfigIssue:
        return ConfigIssue(self.file, self.line_of(path), dotted(path), message)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML 1.2 says they are an error)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE_TAG:
            continue  # ``<<: *defaults``: SafeLoader's construct_mapping merges it
        key = loader.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
        if not isinstance(key, Hashable):
            continue  # SafeLoader's construct_mapping reports "found unhashable key"
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first at line {seen[key] + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


def _construct_timestamp(loader: _Loader, node: yaml.ScalarNode) -> Any:
    """Dates such as 2026-02-30 match YAML's timestamp form but are no date: say where."""
    try:
        return loader.construct_yaml_timestamp(node)  # type: ignore[no-untyped-call]
    except ValueError as e:
        raise yaml.constructor.ConstructorError(
            None, None, f"{node.value!r} is not a valid date ({e})", node.start_mark
        ) from e


_MERGE_TAG = "tag:yaml.org,2002:merge"
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)


def _key(loader: _Loader, node: yaml.Node) -> tuple[Hashable, str | int] | None:
    """A mapping key as the data holds it, and as a path names it.

    ``110:`` is the int 110 (so it matches pydantic's location for it), ``"110":``
    the str; other scalars (dates, booleans) are named by their text. Merge keys
    (``<<``) and complex keys name no path.
    """
    if not isinstance(node, yaml.ScalarNode) or node.tag == _MERGE_TAG:
        return None
    key = loader.construct_object(node)  # type: ignore[no-untyped-call]
    if isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
        return key, key
    return key, node.value


def _walk(
    loader: _Loader,
    node: yaml.Node,
    path: Path_,
    marks: dict[Path_, int],
    dups: list[tuple[Path_, int, int]],
    active: frozenset[int] = frozenset(),
) -> None:
    """Record the line of every key and item under its path; note duplicate keys."""
    if id(node) in active:  # a recursive alias (&a [*a]): its lines are already known
        return
    active = active | {id(node)}
    marks.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        first: dict[Hashable, int] = {}
        for key_node, value_node in node.value:
            named = _key(loader, key_node)
            if named is None:
                continue
            key, part = named
            sub = (*path, part)
            line = key_node.start_mark.line + 1
            if key in first:
                dups.append((sub, line, first[key]))
                continue
            first[key] = line
            marks[sub] = line
            _walk(loader, value_node, sub, marks, dups, active)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*path, i)
            marks[sub] = item.start_mark.line + 1
            _walk(loader, item, sub, marks, dups, active)


def load_yaml(path: Path) -> tuple[Any, SourceMap]:
    """Parse ``path``; raise ConfigError naming the line on any YAML problem."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([ConfigIssue(name, None, "", f"cannot read file: {e.strerror}")]) from e
    except UnicodeDecodeError as e:
        raise ConfigError([ConfigIssue(name, None, "", f"not UTF-8 text: {e.reason}")]) from e
    return load_yaml_text(text, name)


def load_yaml_text(text: str, name: str = "<string>") -> tuple[Any, SourceMap]:
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()  # type: ignore[no-untyped-call]
            marks: dict[Path_, int] = {}
            dups: list[tuple[Path_, int, int]] = []
            if node is not None:
                _walk(loader, node, (), marks, dups)
            if dups:
                raise ConfigError(
                    [
                        ConfigIssue(name, line, dotted(p), f"duplicate key (first at line {first})")
                        for p, line, first in dups
                    ]
                )
            data = loader.construct_document(node) if node is not None else None  # type: ignore[no-untyped-call]
        finally:
            loader.dispose()  # type: ignore[no-untyped-call]
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        context = e.context
        if context and e.context_mark and e.context_mark.line + 1 != line:
            # "while parsing a flow sequence" that was opened on another line (an unclosed [)
            context = f"{context} (from line {e.context_mark.line + 1})"
        msg = " ".join(str(x) for x in (context, e.problem) if x)
        raise ConfigError([ConfigIssue(name, line, "", f"YAML syntax: {msg}")]) from e
    except yaml.YAMLError as e:
        raise ConfigError([ConfigIssue(name, None, "", f"YAML syntax: {e}")]) from e
    return data, SourceMap(name, marks)
