"""The schemas of schema/: loaded once and read-only, ``$ref`` resolved, and one validation path.

- :func:`load_schema` reads ``schema/<name>.schema.json`` once (installed or in a source checkout,
  see :func:`acards.resources.data_dir`) and hands out a read-only copy: no caller can change
  what the next one sees.
- :func:`resolve` follows local ``$ref`` pointers; :func:`node_at` walks a schema to the node that
  describes the value at a JSON pointer.
- :func:`validate` checks a document (a card, a report) against a schema with one cached
  Draft 2020-12 validator and reports every error, ordered by where it is, as a coded
  :class:`~acards.errors.Problem` whose location carries the JSON pointer.  A caller with its own
  wording (the card's hints, its source lines) passes ``describe``.
- JSONL evidence lines (records, prompts, training data) are validated by a msgspec Struct
  generated from the same schema (:func:`schema_struct`: decoding and validation in one pass,
  fast enough for millions of lines); :func:`struct_problem` turns its error into the same kind
  of coded problem, with the field's pointer and description.

jsonschema and msgspec are imported on first use, so that ``acards --help`` stays light.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Annotated, Any, Callable, Iterable, Iterator, Literal, Union

from acards.errors import Location, Problem
from acards.resources import data_dir

# --- loading --------------------------------------------------------------------------------------


def _refuse(_self, *_args, **_kwargs):
    raise TypeError("a loaded schema is read-only: copy it (dict(node), list(node)) to change it")


class FrozenDict(dict):
    """A dict that refuses changes; still a dict, so JSON, jsonschema and ``{**node}`` accept it."""

    __slots__ = ()
    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse

    def __copy__(self) -> dict:
        return dict(self)

    def __deepcopy__(self, memo) -> dict:
        import copy

        return {key: copy.deepcopy(value, memo) for key, value in self.items()}

    def __reduce__(self):
        return dict, (dict(self),)


class FrozenList(list):
    """A list that refuses changes (see FrozenDict)."""

    __slots__ = ()
    __setitem__ = __delitem__ = __iadd__ = __imul__ = append = clear = extend = insert = pop = remove = reverse = sort = _refuse

    def __copy__(self) -> list:
        return list(self)

    def __deepcopy__(self, memo) -> list:
        import copy

        return [copy.deepcopy(value, memo) for value in self]

    def __reduce__(self):
        return list, (list(self),)


def _freeze(value):
    if isinstance(value, dict):
        return FrozenDict((key, _freeze(item)) for key, item in value.items())
    if isinstance(value, list):
        return FrozenList(_freeze(item) for item in value)
    return value


# The short names `acards schema path NAME` takes, for the schemas people write documents against.
SCHEMA_ALIASES = {"card": "acard-1.0", "report": "report-1.0", "mapping": "mapping-1.0",
                  "record": "record-1.0", "prompt": "prompt-1.0", "training": "training-1.0"}


def schema_names() -> list[str]:
    """Every schema shipped, by its full name (``acard-1.0``, ...), sorted."""
    return sorted(path.name.removesuffix(".schema.json") for path in data_dir("schema").glob("*.schema.json"))


def schema_file(name: str):
    """The local file of schema ``name`` (a short name of SCHEMA_ALIASES or a full name), installed or
    in a source checkout; ``usage.unknown-schema`` for a name that is neither."""
    from acards.errors import AcardsError

    full = SCHEMA_ALIASES.get(name, name)
    if full not in schema_names():
        raise AcardsError("usage.unknown-schema", f"no schema named {name!r}",
                          "use one of " + ", ".join([*SCHEMA_ALIASES, *schema_names()]))
    return (data_dir("schema") / f"{full}.schema.json").resolve()


def editor_reference(name: str) -> str:
    """How a YAML modeline (``# yaml-language-server: $schema=...``) names schema ``name`` offline:
    its absolute path, or its file:// URI when the path holds whitespace (the modeline ends at a space)."""
    path = schema_file(name)
    return path.as_uri() if re.search(r"\s", str(path)) else str(path)


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """A schema from schema/, e.g. ``load_schema("acard-1.0")``, read once; read-only."""
    with open(data_dir("schema") / f"{name}.schema.json", encoding="utf-8") as handle:
        return _freeze(json.load(handle))


def resolve(schema: dict, node: dict) -> dict:
    """``node`` with its local ``$ref`` (``#/...``) followed, its own keywords kept on top."""
    while "$ref" in node and node["$ref"].startswith("#/"):
        target = schema
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def node_at(name: str, pointer: str) -> dict:
    """Schema ``name``'s node describing the value at a JSON pointer of a document ({} if none does)."""
    schema = load_schema(name)
    node = schema
    for part in pointer.split("/")[1:]:
        node = resolve(schema, node)
        key = part.replace("~1", "/").replace("~0", "~")
        if "items" in node and part.isdigit():
            node = node["items"]
        elif key in node.get("properties", {}):
            node = node["properties"][key]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
    return resolve(schema, node)


def pointer_of(path: Iterable[str | int]) -> str:
    """The RFC 6901 JSON pointer of a path of keys and indexes ("" for the document itself)."""
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path)


# --- documents: jsonschema ------------------------------------------------------------------------


@lru_cache(maxsize=None)
def validator(name: str):
    """The one Draft 2020-12 validator of schema ``name`` (built once)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(load_schema(name))


def keyword_code(keyword: str) -> str:
    """``schema.<keyword>`` in kebab case, e.g. ``schema.additional-properties``."""
    return "schema." + re.sub(r"(?<!^)(?=[A-Z])", "-", keyword).lower()


def errors(instance: Any, name: str) -> list:
    """Every jsonschema error of ``instance`` against schema ``name``, ordered by where it is."""
    return sorted(validator(name).iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))


def validate(instance: Any, name: str, *, code: str | None = None, hint: str | None = None,
             message: str = "{message}", file: str | None = None, skip: Iterable[str] = (),
             describe: Callable[[Any, str], Iterator[Problem]] | None = None) -> list[Problem]:
    """Every way ``instance`` fails schema ``name``, as coded problems ordered by JSON pointer.

    Each error becomes ``Problem(code, message, hint, Location(file, pointer=...))``: ``hint``
    defaults to the failing node's description; ``message`` is a template over ``{message}``
    (jsonschema's), ``{pointer}`` and ``{at}`` (the pointer, "/" for the document).  Or
    ``describe(error, pointer)`` words each error as the caller's own problems (the card's:
    ``schema.<keyword>`` codes, see :func:`keyword_code`, with hints from its schema).  Errors at or
    under a pointer in ``skip`` are left out.
    """
    if (code is None) == (describe is None):
        raise TypeError("validate() takes either a code or a describe function")
    skip = tuple(skip)
    problems: list[Problem] = []
    for error in errors(instance, name):
        pointer = pointer_of(error.absolute_path)
        if any(pointer == s or pointer.startswith(s + "/") for s in skip):
            continue
        if describe is not None:
            problems.extend(describe(error, pointer))
            continue
        node = error.schema if isinstance(error.schema, dict) else {}
        problems.append(Problem(
            code,
            message.format(message=error.message, pointer=pointer, at=pointer or "/"),
            hint or node.get("description") or f"see schema/{name}.schema.json",
            Location(file, pointer=pointer)))
    return problems


# --- JSONL lines: a msgspec Struct generated from the schema --------------------------------------

_SUPPORTED = {"description", "examples", "type", "enum", "pattern", "minimum", "maximum", "minLength", "default"}
_TYPES = {"string": str, "integer": int, "number": float}


def _field_type(name: str, spec: dict):
    import msgspec

    if spec.get("type") == "object":  # a map of names to values (a record's `scores`)
        return _map_type(name, spec)
    unknown = set(spec) - _SUPPORTED
    if unknown:
        raise RuntimeError(f"schema keyword(s) {sorted(unknown)} on '{name}' are not understood by acards.schemas.schema_struct")
    if "enum" in spec:
        return Literal[tuple(spec["enum"])]
    kinds = spec["type"] if isinstance(spec["type"], list) else [spec["type"]]
    meta = {}
    if "pattern" in spec:
        meta["pattern"] = spec["pattern"]
    if "minimum" in spec:
        meta["ge"] = spec["minimum"]
    if "maximum" in spec:
        meta["le"] = spec["maximum"]
    if "minLength" in spec:
        meta["min_length"] = spec["minLength"]
    types = [Annotated[_TYPES[k], msgspec.Meta(**meta)] if meta else _TYPES[k] for k in kinds]
    return types[0] if len(types) == 1 else Union[tuple(types)]


def _map_type(name: str, spec: dict):
    """``{"type": "object", "propertyNames": {...}, "additionalProperties": {...}}`` as a dict type
    whose keys and values carry the schema's constraints."""
    unknown = set(spec) - {"description", "examples", "type", "propertyNames", "additionalProperties"}
    names = dict(spec.get("propertyNames") or {})
    if unknown or not isinstance(spec.get("additionalProperties"), dict) or set(names) - {"pattern", "maxLength"}:
        raise RuntimeError(f"the object schema of '{name}' is not understood by acards.schemas.schema_struct")
    import msgspec

    meta = {"pattern": names["pattern"]} if "pattern" in names else {}
    if "maxLength" in names:
        meta["max_length"] = names["maxLength"]
    key = Annotated[str, msgspec.Meta(**meta)] if meta else str
    return dict[key, _field_type(name, spec["additionalProperties"])]  # type: ignore[valid-type]


@lru_cache(maxsize=None)
def schema_struct(name: str, unchecked_patterns: frozenset[str] = frozenset()) -> type:
    """A msgspec Struct for the flat JSON object schema ``name`` describes (e.g. "prompt-1.0").

    The struct accepts what the schema accepts (except that an integral float is not an integer);
    a schema keyword it cannot express is an error, never silently ignored.  Fields named in
    ``unchecked_patterns`` skip their regular expression, for a caller that checks those once per
    distinct value instead of once per line."""
    import msgspec

    schema = load_schema(name)
    if schema.get("additionalProperties", True) not in (True, False):
        raise RuntimeError(f"the {name} schema's additionalProperties must be true or false")
    required = set(schema["required"])
    fields = []
    for key, spec in schema["properties"].items():
        if key in unchecked_patterns:
            spec = {k: v for k, v in spec.items() if k != "pattern"}
        kind = _field_type(key, spec)
        if key in required:
            fields.append((key, kind))
        else:
            fields.append((key, Union[kind, msgspec.UnsetType], msgspec.UNSET))
    fields.sort(key=lambda f: len(f) == 3)  # msgspec wants required fields first
    strict = schema.get("additionalProperties") is False
    return msgspec.defstruct(name.split("-")[0].title(), fields, forbid_unknown_fields=strict, gc=False)


_AT = re.compile(r" - at `\$((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)`$")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def struct_problem(error: Exception, name: str, code: str, file: str, line: int) -> Problem:
    """A schema_struct validation error as a coded problem: msgspec's message without its
    `` - at `$.field` `` suffix, which becomes the location's pointer; the field's description
    (or the schema's required fields) as the hint."""
    message = str(error)
    pointer = ""
    match = _AT.search(message)
    if match:
        pointer = "".join("/" + part for step in _STEP.findall(match.group(1)) for part in step if part)
        message = message[: match.start()]
    schema = load_schema(name)
    field = pointer.split("/")[1] if pointer else ""
    hint = schema["properties"].get(field, {}).get("description") or \
        f"see schema/{name}.schema.json: " + ", ".join(schema["required"]) + " are required"
    return Problem(code, message, hint, Location(file, line, None, pointer or None))
