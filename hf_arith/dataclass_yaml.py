"""Strict YAML -> dataclass conversion: the generic half of recipe loading.

`build(cls, raw, where)` turns a plain mapping (what `yaml.safe_load` gives) into the dataclass
`cls`, recursively, checking every key and value against the fields' annotations; anything else is
one `RecipeError` naming the dotted key and what is allowed. `apply_overrides` sets
`key.sub=value` command-line overrides in such a mapping first.

Written by hand: a typo must never fall back on a default, every error is one line naming the
dotted key and what is allowed, and YAML 1.1's quirks (`1e-4` as a string, `no` as false) are
undone: `load_yaml` reads `1e-4` as a float everywhere (untyped mappings such as `model.config`
included), and `build` converts what a typed field still receives as a string. pydantic 2.14's
`TypeAdapter` over these stdlib dataclasses was tried (2026-12-07) and does not keep that:
strict mode refuses a mapping for a dataclass outright (it wants an instance), and setting
strict/extra per class means a pydantic `__pydantic_config__` on every spec class of three
modules; lax mode accepts what recipes refuse (`compile: 1`, `compile: "yes"`, `lr: .nan`) and
refuses what they accept (`mixed_precision: no`, which YAML reads as false; `task_args:` left
empty). Its errors (`unexpected_keyword_argument` at a location) would still need this module's
translation into one-line messages with the allowed keys, and pydantic is no dependency of
hf-arith (it comes only with the optional deepspeed).

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Optim:
    ...     lr: float = 1e-3
    ...     betas: tuple[float, float] = (0.9, 0.999)
    >>> build(Optim, apply_overrides({"lr": 1}, ["betas=[0.9, 0.95]"]), "train")
    Optim(lr=1.0, betas=(0.9, 0.95))
    >>> build(Optim, {"lr": 1, "beta": 0.9}, "train")
    Traceback (most recent call last):
    ...
    hf_arith.errors.RecipeError: unknown key 'train.beta'; allowed keys in train: lr, betas
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any, Literal

import yaml

from hf_arith.errors import RecipeError


class RecipeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that reads `1e-4` as YAML 1.2 does, a float, and refuses a key given twice
    in one mapping. PyYAML follows YAML 1.1, where a float needs a dot and `1e-4` is a string; a
    string then reached fields without a declared type (`model.config.layer_norm_eps`) as text and
    failed inside torch. And PyYAML keeps the last of two equal keys without a word, so a recipe
    that set `seed:` twice trained with whichever came last."""

    def construct_document(self, node):
        _refuse_duplicate_keys(node, "", set())
        return super().construct_document(node)


def _refuse_duplicate_keys(node, path: str, seen: set) -> None:
    """A `ConstructorError` at the second of two equal keys of any mapping under `node`, naming its
    dotted path and the line of the first (merge keys `<<` may be overridden, as YAML intends)."""
    if id(node) in seen:  # an alias: checked where its anchor is
        return
    seen.add(id(node))
    if isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _refuse_duplicate_keys(item, f"{path[:-1]}[{i}].", seen)
    elif isinstance(node, yaml.MappingNode):
        first = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and name != "<<":
                if name in first:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {path + name!r} (first at line {first[name].line + 1}); "
                                    f"YAML would keep only the last one: remove the other", key.start_mark)
                first[name] = key.start_mark
            _refuse_duplicate_keys(value, f"{path}{name}." if name is not None else path, seen)


RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """YAML text to Python values with `RecipeLoader` (safe; `1e-4` is a float; a key given twice
    is an error, not the last one winning).

    Example:
        >>> load_yaml("{eps: 1e-12, lr: 3.0e-4, name: 1e3x, n: 5}")
        {'eps': 1e-12, 'lr': 0.0003, 'name': '1e3x', 'n': 5}
        >>> load_yaml("seed: 1\\ntrain:\\n  lr: 1.0e-3\\n  lr: 3.0e-4\\n")
        Traceback (most recent call last):
        yaml.constructor.ConstructorError: duplicate key 'train.lr' (first at line 3); YAML would keep only the last ...
    """
    return yaml.load(text, Loader=RecipeLoader)  # noqa: S506 - RecipeLoader is a SafeLoader


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping with keys " + ", ".join(f.name for f in dataclasses.fields(tp))
    if origin is not None:
        return str(tp).replace("typing.", "")
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string",
            dict: "a mapping", type(None): "null"}.get(tp, getattr(tp, "__name__", str(tp)))


def _coerce(value, tp, where: str):
    """`value` checked against the annotation `tp` (and gently converted: an int where a float is
    expected, a numeric string such as PyYAML's `1e-4`); `RecipeError` naming `where` otherwise."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _union(value, tp, where)
    if origin is Literal:
        return _literal(value, tp, where)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin in (list, tuple):
        return _sequence(value, tp, where)
    if tp is dict:
        if value is not None and not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return dict(value or {})
    if tp in (bool, str):
        if not isinstance(value, tp):
            raise RecipeError(f"{where}: expected {'true or false' if tp is bool else 'a string'}, got {value!r}")
        return value
    if tp in (int, float):
        return _number(value, tp, where)
    raise TypeError(f"recipe field {where} has an unsupported annotation {tp!r}")  # a bug here, not the user's


def _union(value, tp, where: str):
    """The first option of `X | Y | None` that takes `value`: null, then an exact type (so that
    `warmup: 5` stays an int, steps, under `int | float`), a mapping for a dataclass option (its
    own error names the bad key inside), then each option's conversion in order."""
    options = typing.get_args(tp)
    if value is None and type(None) in options:
        return None
    for option in options:
        if option in (int, float, str, bool) and type(value) is option:
            return value
        if dataclasses.is_dataclass(option) and isinstance(value, dict):
            return build(option, value, where)
    for option in options:
        if option is not type(None):
            try:
                return _coerce(value, option, where)
            except RecipeError:
                pass
    raise RecipeError(f"{where}: expected {_type_name(tp)}, got {value!r}")


def _literal(value, tp, where: str):
    """One of the literal's values; YAML 1.1 reads an unquoted `no`/`off` as false, so a bool is
    given back as the word the user wrote when the literal has it."""
    if isinstance(value, bool):
        spellings = ("yes", "on", "true") if value else ("no", "off", "false")
        value = next((word for word in spellings if word in typing.get_args(tp)), value)
    if value not in typing.get_args(tp):
        raise RecipeError(f"{where}: {value!r} is not allowed; choose one of {_type_name(tp)}")
    return value


def _sequence(value, tp, where: str):
    """`list[X]` (any length) or `tuple[X, Y, ...]` (exactly as many) from a YAML list."""
    items = typing.get_args(tp)
    if typing.get_origin(tp) is list:
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, items[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, (list, tuple)) or len(value) != len(items):
        raise RecipeError(f"{where}: expected a list of {len(items)} values, got {value!r}")
    return tuple(_coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, items)))


def _number(value, tp, where: str):
    """A finite int or float (not a bool); a numeric string (PyYAML's `1e-4`) is read as one, and
    an int field takes a float only when it is whole."""
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)) or not math.isfinite(number):
        raise RecipeError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if tp is float:
        return float(number)
    if float(number) != int(number):
        raise RecipeError(f"{where}: expected an integer, got {value!r}")
    return int(number)


def build(cls, raw, where: str):
    """A `cls` dataclass from the mapping `raw`; every key must be a field of `cls`."""
    if isinstance(raw, cls):
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{where or 'recipe'}: expected a mapping with keys {allowed_keys(cls)}, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            path = f"{where}.{key}" if where else str(key)
            raise RecipeError(f"unknown key {path!r}; allowed keys{' in ' + where if where else ''}: {allowed_keys(cls)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}" if where else f.name
        if f.name in raw:
            kwargs[f.name] = _coerce(raw[f.name], hints[f.name], path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{path}: missing; {cls.__name__} needs {allowed_keys(cls)}")
    return cls(**kwargs)


def allowed_keys(cls) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def parse_override(text: str) -> tuple[list[str], Any]:
    """`"train.lr=3e-4"` -> `(["train", "lr"], 0.0003)`; the value is parsed as YAML.

    Example:
        >>> parse_override("train.betas=[0.9, 0.95]")
        (['train', 'betas'], [0.9, 0.95])
        >>> parse_override("model.config.input_injection=false")
        (['model', 'config', 'input_injection'], False)
    """
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise RecipeError(f"bad override {text!r}; write key.sub=value, e.g. train.lr=3e-4")
    try:
        parsed = load_yaml(value) if value.strip() else None
    except yaml.YAMLError as err:
        raise RecipeError(f"bad override {text!r}: the value is not valid YAML ({err.problem})") from None
    return key.split("."), parsed


def apply_overrides(raw: dict, overrides) -> dict:
    """Sets each `key.sub=value` of `overrides` in the nested mapping `raw` (in place), creating
    mappings on the way. Whether the key exists is checked later, against the dataclasses.

    Example:
        >>> apply_overrides({"train": {"lr": 1e-4}}, ["train.lr=3e-4", "train.batch_warmup.start=8"])
        {'train': {'lr': 0.0003, 'batch_warmup': {'start': 8}}}
    """
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for i, key in enumerate(keys[:-1]):
            if not isinstance(node.get(key), dict):
                if node.get(key) is not None:
                    raise RecipeError(f"override {text!r}: {'.'.join(keys[:i + 1])} is not a mapping")
                node[key] = {}
            node = node[key]
        node[keys[-1]] = value
    return raw


__all__ = ["RecipeLoader", "allowed_keys", "apply_overrides", "build", "load_yaml", "parse_override"]
