"""JSON Schema validators whose regular expressions match in time linear in
the text: ``jsonschema``'s own validator of the schema's draft, extended
(``jsonschema.validators.extend``) so that ``pattern``,
``patternProperties``, ``additionalProperties`` (beside
``patternProperties``) and ``unevaluatedProperties`` match with RE2
(engine/linear_regex.py) instead of Python's backtracking ``re``.

A schema's ``"pattern": "^(a+)+$"`` against one string of 40 ``a`` and a
``b`` keeps ``re`` busy for hours with the interpreter's lock held: every
connection of the server would stop. RE2 answers at once, and refuses the
patterns it cannot match so (lookarounds, backreferences, repetitions past
1000): :func:`check_patterns` names the first, for the registry to refuse
the schema.

The keywords give the errors, paths and messages ``jsonschema`` gives (its
``_keywords`` and ``_utils``, 4.x; tests/schemas/test_linear_json_schema.py
holds them to the library's on patterns both engines read alike). JSON
Schema's patterns are unanchored (ECMA-262 ``RegExp.test``): RE2's
``search``. Each pattern compiles once per schema, not per record.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import jsonschema  # type: ignore[import-untyped]
import jsonschema.validators  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]
from referencing.jsonschema import lookup_recursive_ref

from engine.linear_regex import InvalidPattern, LinearPattern, compile_linear

Search = Callable[[str, str], bool]
"""Whether a pattern matches somewhere in a text."""

_ONE_SUBSCHEMA = (
    "additionalItems",
    "additionalProperties",
    "contains",
    "contentSchema",
    "else",
    "extends",
    "if",
    "items",
    "not",
    "propertyNames",
    "then",
    "unevaluatedItems",
    "unevaluatedProperties",
)
_LIST_OF_SUBSCHEMAS = (
    "allOf",
    "anyOf",
    "disallow",
    "extends",
    "items",
    "oneOf",
    "prefixItems",
    "type",
)
_MAP_OF_SUBSCHEMAS = (
    "$defs",
    "definitions",
    "dependencies",
    "dependentSchemas",
    "patternProperties",
    "properties",
)
"""Where the drafts (3 to 2020-12) keep subschemas: what a walk for patterns
follows. ``const``, ``enum``, ``default`` and ``examples`` hold data, never
patterns."""


def schema_patterns(schema: Any) -> Iterator[str]:
    """Every ``pattern`` and ``patternProperties`` key of ``schema`` and its
    subschemas (without recursion: a schema may nest deep)."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        if isinstance(node.get("patternProperties"), dict):
            yield from (key for key in node["patternProperties"] if isinstance(key, str))
        stack.extend(node.get(keyword) for keyword in _ONE_SUBSCHEMA)
        for keyword in _LIST_OF_SUBSCHEMAS:
            if isinstance(node.get(keyword), list):
                stack.extend(node[keyword])
        for keyword in _MAP_OF_SUBSCHEMAS:
            if isinstance(node.get(keyword), dict):
                stack.extend(node[keyword].values())


class SchemaPatterns:
    """A schema's patterns compiled by RE2, each once."""

    def __init__(self, schema: Any) -> None:
        """Compiles every pattern of ``schema``; InvalidPattern names the
        first RE2 refuses."""
        self._compiled: dict[str, LinearPattern] = {}
        for pattern in schema_patterns(schema):
            self._compile(pattern)

    def _compile(self, pattern: str) -> LinearPattern:
        compiled = self._compiled.get(pattern)
        if compiled is None:
            try:
                compiled = compile_linear(pattern)
            except InvalidPattern as error:
                raise InvalidPattern(
                    f"pattern {pattern!r} cannot be matched in linear time (RE2: {error}); "
                    "lookarounds, backreferences, atomic groups, possessive quantifiers "
                    "and repetitions past 1000 are not served"
                ) from None
            # A pattern only a $ref to a place outside the subschemas reaches
            # is compiled when first met: bounded by the schema's own text.
            self._compiled[pattern] = compiled
        return compiled

    def search(self, pattern: str, text: str) -> bool:
        compiled = self._compile(pattern)
        try:
            return compiled.search(text) is not None
        except UnicodeEncodeError:
            # A lone surrogate (JSON's "\ud800") has no UTF-8 form for RE2:
            # matched as U+FFFD, the character a UTF-8 decoder shows for it.
            whole = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
            return compiled.search(whole) is not None


def check_patterns(schema: Any) -> None:
    """InvalidPattern naming the first pattern of ``schema`` RE2 refuses."""
    SchemaPatterns(schema)


def linear_validator(cls: Any, schema: Any) -> Any:
    """A validator of ``schema`` that checks as ``cls`` (a ``jsonschema``
    validator class) checks, its regexes matched by RE2; InvalidPattern
    names the first pattern RE2 refuses."""
    return _LinearDrafts(SchemaPatterns(schema)).extended(cls)(schema)


class _LinearDrafts:
    """The RE2 extension of each draft one schema's validation meets (its
    own, and any a subschema names in its ``$schema``), over one table of
    compiled patterns."""

    def __init__(self, patterns: SchemaPatterns) -> None:
        self._search: Search = patterns.search
        self._extended: dict[Any, Any] = {}

    def extended(self, cls: Any) -> Any:
        found = self._extended.get(cls)
        if found is None:
            found = jsonschema.validators.extend(cls, self._keywords(cls))
            # The library's evolve picks the stock class of a subschema's (or
            # a $ref target's) $schema, whose regexes backtrack: this one
            # picks that class's extension instead.
            found.evolve = self._evolve(found)
            self._extended[cls] = self._extended[found] = found
        return found

    def _evolve(self, cls: Any) -> Callable[..., Any]:
        fields = [(field.name, field.alias) for field in attrs.fields(cls) if field.init]

        def evolve(validator: Any, **changes: Any) -> Any:
            schema = changes.setdefault("schema", validator.schema)
            chosen = jsonschema.validators.validator_for(schema, default=type(validator))
            for name, alias in fields:
                if alias not in changes:
                    changes[alias] = getattr(validator, name)
            return self.extended(chosen)(**changes)

        return evolve

    def _keywords(self, cls: Any) -> dict[str, Callable[..., Any]]:
        search = self._search
        unevaluated = (
            _unevaluated_properties(search, _evaluated_keys_2019)
            if cls is jsonschema.Draft201909Validator
            else _unevaluated_properties(search, _evaluated_keys_2020)
        )
        keywords = {
            "pattern": _pattern(search),
            "patternProperties": _pattern_properties(search),
            "additionalProperties": _additional_properties(search),
            "unevaluatedProperties": unevaluated,
        }
        return {name: check for name, check in keywords.items() if name in cls.VALIDATORS}


Keyword = Callable[[Any, Any, Any, Any], Iterator[Any]]
EvaluatedKeys = Callable[[Search, Any, Any, Any], list[Any]]


def _pattern(search: Search) -> Keyword:
    def pattern(validator: Any, pattern: Any, instance: Any, schema: Any) -> Iterator[Any]:
        if validator.is_type(instance, "string") and not search(pattern, instance):
            yield ValidationError(f"{instance!r} does not match {pattern!r}")

    return pattern


def _pattern_properties(search: Search) -> Keyword:
    def pattern_properties(
        validator: Any, pattern_properties: Any, instance: Any, schema: Any
    ) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        for pattern, subschema in pattern_properties.items():
            for key, value in instance.items():
                if search(pattern, key):
                    yield from validator.descend(value, subschema, path=key, schema_path=pattern)

    return pattern_properties


def _additional_keys(search: Search, instance: Any, schema: Any) -> Iterator[Any]:
    """The keys neither ``properties`` nor ``patternProperties`` names (the
    library searches the patterns joined by ``|``: the same, one by one)."""
    properties = schema.get("properties", {})
    patterns = list(schema.get("patternProperties", {}))
    for key in instance:
        if key not in properties and not any(search(pattern, key) for pattern in patterns):
            yield key


def _extras(extras: list[Any]) -> tuple[str, str]:
    verb = "was" if len(extras) == 1 else "were"
    return ", ".join(repr(extra) for extra in extras), verb


def _additional_properties(search: Search) -> Keyword:
    def additional_properties(
        validator: Any, additional: Any, instance: Any, schema: Any
    ) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        extras = set(_additional_keys(search, instance, schema))
        if validator.is_type(additional, "object"):
            for extra in extras:
                yield from validator.descend(instance[extra], additional, path=extra)
        elif not additional and extras:
            if "patternProperties" in schema:
                verb = "does" if len(extras) == 1 else "do"
                joined = ", ".join(repr(each) for each in sorted(extras))
                patterns = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
                yield ValidationError(f"{joined} {verb} not match any of the regexes: {patterns}")
            else:
                listed, verb = _extras(sorted(extras, key=str))
                yield ValidationError(
                    f"Additional properties are not allowed ({listed} {verb} unexpected)"
                )

    return additional_properties


def _unevaluated_properties(search: Search, evaluated_keys: EvaluatedKeys) -> Keyword:
    def unevaluated_properties(
        validator: Any, unevaluated: Any, instance: Any, schema: Any
    ) -> Iterator[Any]:
        if not validator.is_type(instance, "object"):
            return
        evaluated = evaluated_keys(search, validator, instance, schema)
        invalid = [
            key
            for key in instance
            if key not in evaluated
            for _ in validator.descend(instance[key], unevaluated, path=key, schema_path=key)
        ]  # a key once per error, as the library lists it
        if not invalid:
            return
        if unevaluated is False:
            listed, verb = _extras(sorted(invalid, key=str))
            yield ValidationError(
                f"Unevaluated properties are not allowed ({listed} {verb} unexpected)"
            )
        else:
            listed, verb = _extras(invalid)
            yield ValidationError(
                "Unevaluated properties are not valid under the given schema "
                f"({listed} {verb} unevaluated and invalid)"
            )

    return unevaluated_properties


def _is_valid(errors: Iterator[Any]) -> bool:
    return next(errors, None) is None


def _keys_of_references(
    search: Search, evaluated_keys: EvaluatedKeys, validator: Any, instance: Any, refs: list[Any]
) -> list[Any]:
    found: list[Any] = []
    for resolved in refs:
        inner = validator.evolve(schema=resolved.contents, _resolver=resolved.resolver)
        found += evaluated_keys(search, inner, instance, resolved.contents)
    return found


def _keys_of_applicators(
    search: Search, evaluated_keys: EvaluatedKeys, validator: Any, instance: Any, schema: Any
) -> list[Any]:
    """The keys ``patternProperties``, ``dependentSchemas``, ``allOf``,
    ``anyOf``, ``oneOf`` and ``if``/``then``/``else`` evaluate: alike in
    both drafts that have ``unevaluatedProperties``."""
    found: list[Any] = []
    for key in instance if "patternProperties" in schema else ():
        found += (key for pattern in schema["patternProperties"] if search(pattern, key))
    for key, subschema in schema.get("dependentSchemas", {}).items():
        if key in instance:
            found += evaluated_keys(search, validator, instance, subschema)
    for keyword in ("allOf", "oneOf", "anyOf"):
        for subschema in schema.get(keyword, []):
            if _is_valid(validator.descend(instance, subschema)):
                found += evaluated_keys(search, validator, instance, subschema)
    if "if" in schema:
        if validator.evolve(schema=schema["if"]).is_valid(instance):
            found += evaluated_keys(search, validator, instance, schema["if"])
            if "then" in schema:
                found += evaluated_keys(search, validator, instance, schema["then"])
        elif "else" in schema:
            found += evaluated_keys(search, validator, instance, schema["else"])
    return found


def _evaluated_keys_2020(search: Search, validator: Any, instance: Any, schema: Any) -> list[Any]:
    """The instance's keys ``schema`` evaluates, as draft 2020-12 counts
    them (jsonschema's ``_utils.find_evaluated_property_keys_by_schema``)."""
    if validator.is_type(schema, "boolean"):
        return []
    refs = [
        validator._resolver.lookup(schema[keyword])
        for keyword in ("$ref", "$dynamicRef")
        if schema.get(keyword) is not None
    ]
    found = _keys_of_references(search, _evaluated_keys_2020, validator, instance, refs)
    properties = schema.get("properties")
    if validator.is_type(properties, "object"):
        found += properties.keys() & instance.keys()
    for keyword in ("additionalProperties", "unevaluatedProperties"):
        subschema = schema.get(keyword)
        if subschema is not None:
            found += (
                key
                for key, value in instance.items()
                if _is_valid(validator.descend(value, subschema))
            )
    return found + _keys_of_applicators(search, _evaluated_keys_2020, validator, instance, schema)


def _evaluated_keys_2019(search: Search, validator: Any, instance: Any, schema: Any) -> list[Any]:
    """The instance's keys ``schema`` evaluates, as draft 2019-09 counts
    them (jsonschema's ``_legacy_keywords.find_evaluated_property_keys_by_schema``)."""
    if validator.is_type(schema, "boolean"):
        return []
    refs = [validator._resolver.lookup(schema["$ref"])] if schema.get("$ref") is not None else []
    if "$recursiveRef" in schema:
        refs.append(lookup_recursive_ref(validator._resolver))
    found = _keys_of_references(search, _evaluated_keys_2019, validator, instance, refs)
    for keyword in ("properties", "additionalProperties", "unevaluatedProperties"):
        if keyword not in schema:
            continue
        value = schema[keyword]
        if validator.is_type(value, "boolean") and value:
            found += instance.keys()
        elif validator.is_type(value, "object"):
            # The library counts the subschema's own keys here, as it does.
            found += (key for key in value if key in instance)
    return found + _keys_of_applicators(search, _evaluated_keys_2019, validator, instance, schema)
