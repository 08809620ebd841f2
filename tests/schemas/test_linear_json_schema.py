"""JSON Schema validators whose regexes match with RE2: on patterns Python's
``re`` and RE2 read alike, they give exactly ``jsonschema``'s own errors
(paths, schema paths, messages); every keyword that matches a regex, in
every draft and through a ``$ref`` into a subschema naming its own
``$schema``, matches with RE2; a pattern RE2 refuses is named wherever it
sits; each pattern compiles once per schema."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.linear_regex import InvalidPattern
from engine.schemas import linear_json_schema
from engine.schemas.linear_json_schema import check_patterns, linear_validator, schema_patterns

DRAFT7 = "http://json-schema.org/draft-07/schema#"
DRAFT2019 = "https://json-schema.org/draft/2019-09/schema"
DRAFT2020 = "https://json-schema.org/draft/2020-12/schema"
ALPHABET = "ab1_"
"""Texts without a newline (Python's ``$`` also matches before a last one)
and in ASCII (its ``\\d`` and ``\\w`` also take other scripts' digits and
letters): where ``re`` and RE2 read a pattern alike."""


def validators(schema: Any) -> tuple[Any, Any]:
    """The library's own validator of ``schema`` and its RE2 extension."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema), linear_validator(cls, schema)


def errors(validator: Any, instance: Any) -> list[Any]:
    return [_error(error) for error in validator.iter_errors(instance)]


def _error(error: Any) -> Any:
    return (
        list(error.absolute_path),
        list(error.absolute_schema_path),
        error.message,
        sorted((_error(inner) for inner in error.context), key=repr),
    )


# -- the library's answers, on patterns both engines read alike ---------------------------

ATOMS = st.sampled_from(["a", "b", "1", "_", ".", "[ab]", "[^a]", r"\d", r"\w", "(?:)"])


def _combined(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(inner, inner).map("".join),
        st.tuples(inner, inner).map(lambda p: f"(?:{p[0]}|{p[1]})"),
        inner.map(lambda p: f"({p})"),
        st.tuples(inner, st.sampled_from(["*", "+", "?", "{1,2}", "*?", "+?"])).map(
            lambda p: f"(?:{p[0]}){p[1]}"
        ),
    )


PATTERNS = st.tuples(
    st.sampled_from(["", "^"]),
    st.recursive(ATOMS, _combined, max_leaves=6),
    st.sampled_from(["", "$"]),
).map("".join)
TEXTS = st.text(ALPHABET, max_size=6)
VALUE_SCHEMAS = st.sampled_from([{}, {"type": "integer"}, {"type": "string"}, False, True])


@st.composite
def object_schemas(draw: st.DrawFn) -> dict[str, Any]:
    draft = draw(st.sampled_from([DRAFT7, DRAFT2019, DRAFT2020]))
    schema: dict[str, Any] = {"$schema": draft}
    if draw(st.booleans()):
        schema["properties"] = {
            key: draw(VALUE_SCHEMAS) for key in draw(st.lists(TEXTS, max_size=2))
        }
    if draw(st.booleans()):
        patterns = draw(st.lists(PATTERNS, max_size=3, unique=True))
        schema["patternProperties"] = {p: draw(VALUE_SCHEMAS) for p in patterns}
    if draw(st.booleans()):
        schema["additionalProperties"] = draw(VALUE_SCHEMAS)
    if draw(st.booleans()):
        schema["propertyNames"] = {"pattern": draw(PATTERNS)}
    if draft != DRAFT7 and draw(st.integers(0, 2)):
        inner = {p: draw(VALUE_SCHEMAS) for p in draw(st.lists(PATTERNS, max_size=2, unique=True))}
        schema["allOf"] = [{"patternProperties": inner}]
        if draw(st.booleans()):
            schema["if"] = {"required": [draw(TEXTS)]}
            schema["then"] = {"patternProperties": {draw(PATTERNS): {}}}
        if draw(st.booleans()):
            schema["dependentSchemas"] = {draw(TEXTS): {"patternProperties": {draw(PATTERNS): {}}}}
        schema["unevaluatedProperties"] = draw(VALUE_SCHEMAS)
    return schema


KEYS = TEXTS | st.just("type")
"""``type`` also: draft 2019-09 counts a subschema's own keywords as evaluated keys."""
INSTANCES = st.dictionaries(KEYS, st.integers(0, 3) | TEXTS, max_size=4)


@settings(max_examples=1000, deadline=None)
@given(object_schemas(), INSTANCES)
def test_objects_get_the_librarys_errors(schema: dict[str, Any], instance: dict[str, Any]) -> None:
    stock, linear = validators(schema)
    assert errors(linear, instance) == errors(stock, instance)
    assert linear.is_valid(instance) == stock.is_valid(instance)


@settings(max_examples=400, deadline=None)
@given(PATTERNS, TEXTS, st.sampled_from([DRAFT7, DRAFT2019, DRAFT2020]))
def test_strings_get_the_librarys_errors(pattern: str, text: str, draft: str) -> None:
    schema = {"$schema": draft, "anyOf": [{"pattern": pattern}, {"maxLength": 0}]}
    stock, linear = validators(schema)
    assert errors(linear, text) == errors(stock, text)


EVALUATED = [
    {"additionalProperties": True},
    {"additionalProperties": {"type": "integer"}},
    {"properties": {"a": True, "type": False}},
    {"patternProperties": {"^b": {}}},
    {"if": {"required": ["a"]}, "then": {"patternProperties": {"^b": {}}}},
    {"if": {"required": ["z"]}, "else": {"patternProperties": {"^b": {}}}},
    {"dependentSchemas": {"a": {"patternProperties": {"^b": {}}}}},
    {"anyOf": [{"patternProperties": {"^b": {}}}, {"required": ["z"]}]},
    {"oneOf": [{"patternProperties": {"^b": {"type": "integer"}}}]},
    {"$ref": "#/$defs/b", "$defs": {"b": {"patternProperties": {"^b": {}}}}},
]
"""The keywords that count a key as evaluated, one at a time."""


@pytest.mark.parametrize("draft", [DRAFT2019, DRAFT2020])
@pytest.mark.parametrize("evaluating", EVALUATED)
@pytest.mark.parametrize("unevaluated", [False, {"type": "string"}])
def test_unevaluated_keys_are_the_librarys(
    draft: str, evaluating: dict[str, Any], unevaluated: Any
) -> None:
    schema = {"$schema": draft, **evaluating, "unevaluatedProperties": unevaluated}
    stock, linear = validators(schema)
    for instance in [{"a": 1, "b1": 2, "c": 3}, {"type": 1, "b": "x"}, {}]:
        assert errors(linear, instance) == errors(stock, instance)


def test_recursive_and_dynamic_references_count_evaluated_keys() -> None:
    recursive = {
        "$schema": DRAFT2019,
        "$recursiveAnchor": True,
        "patternProperties": {"^b": {}},
        "properties": {"child": {"$recursiveRef": "#", "unevaluatedProperties": False}},
    }
    dynamic = {
        "$schema": DRAFT2020,
        "$dynamicAnchor": "node",
        "patternProperties": {"^b": {}},
        "properties": {"child": {"$dynamicRef": "#node", "unevaluatedProperties": False}},
    }
    for schema in (recursive, dynamic):
        stock, linear = validators(schema)
        for instance in [{"child": {"b": 1, "c": 2}}, {"child": {"b": 1}}, {"c": 1}]:
            assert errors(linear, instance) == errors(stock, instance)
        assert not linear.is_valid({"child": {"b": 1, "c": 2}})


# -- RE2 on every path --------------------------------------------------------------------

NEWLINE = "a\n"
"""Python's ``$`` matches before a last newline; RE2's (and ECMA-262's) at
the end only: a text on which the two engines answer differently."""

EVERY_PATH = {
    "pattern": ({"pattern": "^a$"}, NEWLINE),
    "patternProperties": ({"patternProperties": {"^a$": {"type": "integer"}}}, {NEWLINE: "x"}),
    "additionalProperties": (
        {"patternProperties": {"^a$": {}}, "additionalProperties": False},
        {NEWLINE: 1},
    ),
    "unevaluatedProperties": (
        {"patternProperties": {"^a$": {}}, "unevaluatedProperties": False},
        {NEWLINE: 1},
    ),
    "unevaluatedProperties of allOf": (
        {"allOf": [{"patternProperties": {"^a$": {}}}], "unevaluatedProperties": False},
        {NEWLINE: 1},
    ),
    "unevaluatedProperties, 2019-09": (
        {"$schema": DRAFT2019, "patternProperties": {"^a$": {}}, "unevaluatedProperties": False},
        {NEWLINE: 1},
    ),
    "draft 4": ({"$schema": "http://json-schema.org/draft-04/schema#", "pattern": "^a$"}, NEWLINE),
    "a $ref to the root naming its $schema": (
        {"$schema": DRAFT2020, "properties": {"child": {"$ref": "#"}}, "pattern": "^a$"},
        {"child": NEWLINE},
    ),
    "a $ref to a subschema of another draft": (
        {"$defs": {"old": {"$schema": DRAFT7, "pattern": "^a$"}}, "$ref": "#/$defs/old"},
        NEWLINE,
    ),
    "a $ref outside the subschemas": (
        {"$ref": "#/x-shared/name", "x-shared": {"name": {"pattern": "^a$"}}},
        NEWLINE,
    ),
}


@pytest.mark.parametrize("path", list(EVERY_PATH))
def test_every_keyword_matches_with_re2(path: str) -> None:
    schema, instance = EVERY_PATH[path]
    stock, linear = validators(schema)
    assert stock.is_valid(instance) != linear.is_valid(instance)
    assert linear.is_valid(instance) == (path == "patternProperties")


def test_a_backtracking_pattern_answers() -> None:
    """``^(a+)+$`` on 40 ``a`` and a ``b``: hours for ``re``, at once here."""
    _, linear = validators({"pattern": "^(a+)+$"})
    assert not linear.is_valid("a" * 40 + "b")
    assert linear.is_valid("a" * 40)


def test_a_lone_surrogate_is_matched_as_a_replacement_character() -> None:
    """JSON's ``"\\ud800"`` has no UTF-8 form for RE2: no exception."""
    _, any_one = validators({"pattern": "^.$"})
    _, letter = validators({"pattern": "^a$"})
    assert any_one.is_valid("\ud800")
    assert not letter.is_valid("\ud800")


# -- patterns RE2 refuses -------------------------------------------------------------------

REFUSED = ["(?=a)", "(?<!a)b", r"(a)\1", "(?>a)", "a*+", "a{1001}", r"a\Z"]
"""Lookarounds, a backreference, an atomic group, a possessive quantifier, a
repetition past 1000, Python's end-of-text escape."""


def _placed(pattern: str) -> list[dict[str, Any]]:
    inner = {"pattern": pattern}
    return [
        inner,
        {"patternProperties": {pattern: {}}},
        {"properties": {"p": inner}},
        {"items": inner},
        {"items": [inner]},
        {"prefixItems": [inner]},
        {"$defs": {"d": inner}},
        {"definitions": {"d": inner}},
        {"dependencies": {"d": inner}},
        {"dependentSchemas": {"d": inner}},
        {"allOf": [{}, inner]},
        {"not": inner},
        {"if": {}, "then": {}, "else": inner},
        {"additionalProperties": {"properties": {"q": {"propertyNames": inner}}}},
    ]


@pytest.mark.parametrize("pattern", REFUSED)
def test_a_pattern_re2_refuses_is_named_wherever_it_sits(pattern: str) -> None:
    for schema in _placed(pattern):
        assert list(schema_patterns(schema)) == [pattern]
        with pytest.raises(InvalidPattern, match="RE2") as refused:
            check_patterns(schema)
        assert repr(pattern) in str(refused.value)
        with pytest.raises(InvalidPattern):
            validators(schema)


def test_data_is_not_read_as_patterns() -> None:
    data = {"pattern": "(?=a)", "patternProperties": {"(?=a)": {}}}
    schema = {"enum": [data], "const": data, "default": data, "examples": [data]}
    assert list(schema_patterns(schema)) == []
    check_patterns(schema)


def test_a_refused_pattern_only_a_ref_reaches_is_refused_when_met() -> None:
    """A place no subschema keyword names is compiled when first reached:
    still RE2, never ``re``."""
    schema = {"$ref": "#/x-shared/name", "x-shared": {"name": {"pattern": "(?=a)"}}}
    _, linear = validators(schema)
    with pytest.raises(InvalidPattern, match="RE2"):
        linear.is_valid("a")


def test_each_pattern_compiles_once_per_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []
    compile_linear = linear_json_schema.compile_linear

    def counted(pattern: str) -> Any:
        compiled.append(pattern)
        return compile_linear(pattern)

    monkeypatch.setattr(linear_json_schema, "compile_linear", counted)
    schema = {
        "properties": {"name": {"pattern": "^n"}},
        "patternProperties": {"^x": {"pattern": "^v"}},
        "additionalProperties": False,
        "unevaluatedProperties": False,
    }
    _, linear = validators(schema)
    assert sorted(compiled) == ["^n", "^v", "^x"]
    for number in range(50):
        linear.is_valid({"name": f"n{number}", f"x{number}": "v", "other": 1})
    assert sorted(compiled) == ["^n", "^v", "^x"]
