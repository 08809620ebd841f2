"""Every numeric setting of the configs the embedded API takes is refused
outside its range when the config is made, with the setting, its value and
its range named (ConfigOutOfRange); so is every string setting given
another type, and every choice given none of its set; the config file's
reader refuses the same values with the same words and its file key; any
config accepted opens an engine that appends and reads, and any server
config a file sets is the one Python makes; and the docs' tables of
ranges are these tables (docs/design/0132, 0139)."""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine
from engine.authorization import AuthorizationConfig
from engine.cli.main import main
from engine.config_ranges import (
    AUTHORIZATION_TEXTS,
    DELEGATION_TOKEN_RANGES,
    DELEGATION_TOKEN_TEXTS,
    ENGINE_RANGES,
    GROUP_ORDER,
    GROUP_RANGES,
    GROUP_TEXTS,
    KEEP_SNAPSHOTS_S_MOST,
    MIRROR_RANGES,
    MIRROR_TEXTS,
    SERVER_ASSIGNORS,
    TABLES_RANGES,
    TABLES_TEXTS,
    TRANSACTION_RANGES,
)
from engine.delegation_tokens import DelegationTokenConfig
from engine.engine import EngineConfig
from engine.groups.assignors import ASSIGNORS
from engine.groups.config import GroupConfig
from engine.mirror.settings import MirrorSettings, settings_from_table
from engine.server.config import ConfigFileError, ServerConfig, load_config_file
from engine.server.config_ranges import (
    HTTP_RANGES,
    LISTENER_RANGES,
    LISTENER_TEXTS,
    OAUTH_RANGES,
    OAUTH_TEXTS,
    REGISTRY_RANGES,
    REGISTRY_TEXTS,
    SERVER_RANGES,
    SERVER_TEXTS,
)
from engine.server.http_config import HttpConfig
from engine.server.listeners import Listener, SecurityProtocol
from engine.server.registry_config import RegistryConfig
from engine.server.sasl.oauth_config import OAuthBearerConfig
from engine.tables.settings import TablesConfig
from engine.transactions.config import TransactionConfig
from s3stream import ConfigOutOfRange, StreamStoreConfig
from s3stream.config import STORE_RANGES, STORE_TEXTS, WAL_SEGMENT_LEAST
from s3stream.ranges import LONG_MAX, Range, Text
from s3stream.store import LocalStore
from tests.engine.helpers_records import batch, read_partition
from wal import Durability

DOCS = Path(__file__).resolve().parents[2] / "docs"

Kind = TypeVar("Kind", Range, Text)

EMBEDDED: dict[type[Any], dict[str, Range]] = {
    EngineConfig: ENGINE_RANGES,
    StreamStoreConfig: STORE_RANGES,
    GroupConfig: GROUP_RANGES,
    TransactionConfig: TRANSACTION_RANGES,
    TablesConfig: TABLES_RANGES,
    DelegationTokenConfig: DELEGATION_TOKEN_RANGES,
}
"""Each config the embedded API takes with numbers (EngineConfig and the
configs it holds), and its table."""

SERVED: dict[type[Any], dict[str, Range]] = {
    ServerConfig: SERVER_RANGES,
    HttpConfig: HTTP_RANGES,
    RegistryConfig: REGISTRY_RANGES,
}
"""The wire server's configs with numbers, and their tables."""

MIRRORED: dict[type[Any], dict[str, Range]] = {MirrorSettings: MIRROR_RANGES}
"""The mirror's settings (``tidelog mirror``'s flags, the [mirror] table)."""

SECURED: dict[type[Any], dict[str, Range]] = {OAuthBearerConfig: OAUTH_RANGES}
"""The configs of the server's security settings that hold numbers (the
[server] table's sasl.oauthbearer.*)."""

CONFIGS = {**EMBEDDED, **SERVED, **MIRRORED, **SECURED}

TEXTS: dict[type[Any], dict[str, Text]] = {
    EngineConfig: {},
    StreamStoreConfig: STORE_TEXTS,
    GroupConfig: GROUP_TEXTS,
    TransactionConfig: {},
    TablesConfig: TABLES_TEXTS,
    DelegationTokenConfig: DELEGATION_TOKEN_TEXTS,
    ServerConfig: SERVER_TEXTS,
    HttpConfig: {},
    RegistryConfig: REGISTRY_TEXTS,
    MirrorSettings: MIRROR_TEXTS,
    OAuthBearerConfig: OAUTH_TEXTS,
    AuthorizationConfig: AUTHORIZATION_TEXTS,
}
"""Each config's strings and choices, lists of them and tables of them,
by the same configs."""

REQUIRED: dict[type[Any], dict[str, str]] = {
    MirrorSettings: {"source": "source-1:9092", "target": "target-1:9092"},
    TablesConfig: {"uri": "sqlite:///catalog.db"},  # a rest catalog needs one
}
"""Settings a config cannot be made without, beside the one tried."""

FILE_SECTION: dict[type[Any], str | None] = {
    EngineConfig: "engine",
    GroupConfig: "engine",
    TransactionConfig: "engine",
    StreamStoreConfig: "store",
    TablesConfig: "tables",
    DelegationTokenConfig: None,  # [server]'s delegation_token_* settings set it
    ServerConfig: "server",
    HttpConfig: "http",
    RegistryConfig: "schema_registry",
    MirrorSettings: "mirror",
    OAuthBearerConfig: "server",
    AuthorizationConfig: None,  # [server]'s super.users and allow.everyone.if.no.acl.found
}
"""The config file's table that sets each config's fields."""

FILE_KEYS: dict[tuple[type[Any], str], str] = {
    (MirrorSettings, "source_config"): "from_config",
    (MirrorSettings, "target_config"): "to_config",
}
"""Settings a file sets by a key of another name."""

FILE_KEY_PREFIX: dict[type[Any], str] = {OAuthBearerConfig: "sasl_oauthbearer_"}
"""Configs whose settings a file's keys name with a prefix."""


def _written_key(config: type[Any], setting: str) -> str:
    """The key a file sets ``setting`` of ``config`` by."""
    return FILE_KEYS.get((config, setting), FILE_KEY_PREFIX.get(config, "") + setting)


SET_BY_OTHER_NAMES = {
    ServerConfig: {"port", "advertised_port", "host", "advertised_host"},
    MirrorSettings: {"source", "target"},
}
"""Settings a file sets by other keys: ServerConfig's inside ``listen``
and ``advertised``, the mirror's source (the server itself) and ``to``."""

FILE_REQUIRED = {"mirror": 'to = "target-1:9092"\n'}
"""What a file's table cannot be read without, beside the key tried."""


def _file_key(config: type[Any], setting: str) -> str | None:
    """The table a file sets ``setting`` in, or None when it sets it by no key."""
    section = FILE_SECTION[config]
    if setting in SET_BY_OTHER_NAMES.get(config, ()):
        return None
    return section


LOOSE_GROUP_BOUNDS = {
    "group_consumer_min_session_timeout_ms": 1,
    "group_consumer_max_session_timeout_ms": 10**9,
    "group_consumer_session_timeout_ms": 2,
    "group_consumer_min_heartbeat_interval_ms": 1,
    "group_consumer_max_heartbeat_interval_ms": 10**9,
    "group_consumer_heartbeat_interval_ms": 1,
}
"""GroupConfig's consumer-group bounds as loose as their order (GROUP_ORDER)
lets them be: any one of them then takes every value of its own range."""


def companions(setting: str) -> dict[str, int]:
    """The settings ``setting`` is tried beside (tests/server/test_config_doc.py
    writes them into its files too)."""
    if any(setting in ordered for ordered in GROUP_ORDER):
        return {k: v for k, v in LOOSE_GROUP_BOUNDS.items() if k != setting}
    return {}


def _step(accepted: Range) -> float:
    return 1 if accepted.integer else 0.0005


def _boundaries(accepted: Range) -> tuple[list[float], list[object]]:
    """The values at each end of ``accepted`` (accepted) and a step past
    each, and values of no number at all (refused)."""
    step = _step(accepted)
    inside: list[float | None] = []
    outside: list[object] = [math.nan, math.inf, -math.inf, True, "1"]
    if accepted.above:
        inside.append(accepted.least + step)
        outside.append(accepted.least)
    else:
        inside.append(accepted.least)
    outside.append(accepted.least - step)
    if accepted.most is not None:
        inside.append(accepted.most)
        outside.append(accepted.most + step)
    if accepted.off:
        inside.append(0)
        outside.remove(accepted.least - step)
        outside.append(accepted.least / 2)
    if accepted.integer:
        outside.append(float(accepted.least))  # an int setting takes no float, 1.0 neither
    if accepted.optional:
        inside.append(None)  # "the default derived from another"
    else:
        outside.append(None)
    return inside, outside


def _cases(tables: dict[type[Any], dict[str, Kind]]) -> list[tuple[type[Any], str, Kind]]:
    """Each setting of each config's table, as (config, setting, its kind)."""
    return [
        (config, setting, accepted)
        for config, table in tables.items()
        for setting, accepted in table.items()
    ]


CASES = _cases(CONFIGS)


def _case_id(case: tuple[type[Any], str, object]) -> str:
    return f"{case[0].__name__}.{case[1]}"


def test_every_number_of_every_config_has_a_range() -> None:
    """The inventory: a numeric field added without a range fails here."""
    numeric = ("int", "float", "int | None", "float | None")
    for config, table in CONFIGS.items():
        numbers = {f.name for f in fields(config) if str(f.type) in numeric}
        assert numbers == set(table), config.__name__
        for setting, accepted in table.items():
            declared = next(str(f.type) for f in fields(config) if f.name == setting)
            assert accepted.integer == declared.startswith("int"), setting
            assert accepted.optional == declared.endswith("| None"), setting


def test_every_string_of_every_config_has_a_kind() -> None:
    """The inventory of strings: a string or choice field added without
    its entry in its config's table of strings fails here."""
    strings = ("str", "str | None", "Durability | str", "tuple[str, ...]", "dict[str, str]")
    for config, texts in TEXTS.items():
        named = {f.name for f in fields(config) if str(f.type) in strings}
        assert named == set(texts), config.__name__
        for setting, accepted in texts.items():
            declared = next(str(f.type) for f in fields(config) if f.name == setting)
            assert accepted.optional == declared.endswith("| None"), setting
            assert accepted.listed == declared.startswith("tuple"), setting
            assert accepted.table == declared.startswith("dict"), setting


def test_every_default_and_the_small_footprint_are_in_range() -> None:
    for config in CONFIGS:
        config(**REQUIRED.get(config, {}))
    StreamStoreConfig.small()
    EngineConfig.small()


@pytest.mark.parametrize(("config", "setting", "accepted"), CASES, ids=map(_case_id, CASES))
def test_each_setting_takes_its_range_and_is_refused_past_it(
    config: type[Any], setting: str, accepted: Range
) -> None:
    inside, outside = _boundaries(accepted)
    base = {**REQUIRED.get(config, {}), **companions(setting)}
    for value in inside:
        assert getattr(config(**{**base, setting: value}), setting) == value
    for value in outside:
        with pytest.raises(ConfigOutOfRange) as refused:
            config(**{**base, setting: value})
        assert (refused.value.setting, refused.value.accepted) == (setting, accepted.phrase())
        assert refused.value.value is value
        assert str(refused.value) == f"{setting} must be {accepted.phrase()}, not {value!r}"


FILE_CASES = [case for case in CASES if _file_key(case[0], case[1]) is not None]
"""The settings a file sets by their names (DelegationTokenConfig's as
[server]'s delegation_token_*, ServerConfig's ports in listen and advertised)."""


@pytest.mark.parametrize(
    ("config", "setting", "accepted"), FILE_CASES, ids=map(_case_id, FILE_CASES)
)
def test_the_config_file_refuses_the_same_values_in_the_same_words(
    tmp_path: Path, config: type[Any], setting: str, accepted: Range
) -> None:
    section = _file_key(config, setting)
    path = tmp_path / "tidelog.toml"
    inside, outside = _boundaries(accepted)
    base = FILE_REQUIRED.get(str(section), "")
    base += "".join(f"{k} = {v}\n" for k, v in companions(setting).items())
    key = _written_key(config, setting)
    for value in inside:
        if value is None:
            continue  # a file leaves such a key out
        path.write_text(f"[{section}]\n{base}{key} = {value!r}\n")
        load_config_file(path)
    for value in outside:
        if value is None or isinstance(value, bool | str):
            continue  # no TOML value; a wrong type, refused as one by its type check
        if accepted.integer and isinstance(value, float) and not accepted.optional:
            continue  # refused by the file's type check first, as a wrong type
        path.write_text(f"[{section}]\n{base}{key} = {_toml(value)}\n")
        with pytest.raises(ConfigFileError) as refused:
            load_config_file(path)
        from_python = f"{key} must be {accepted.phrase()}, not "
        assert f"{path}: [{section}]: {from_python}" in str(refused.value)
        assert isinstance(refused.value.__cause__, ConfigOutOfRange)


TEXT_CASES = _cases(TEXTS)

TEXTS_INSIDE: dict[tuple[type[Any], str], list[object]] = {
    (OAuthBearerConfig, "jwks_endpoint_url"): ["https://idp.test/jwks", "file:///keys.json", None],
}
"""Strings a setting takes where not every string is one (a URL's scheme)."""


NOT_STRINGS: list[object] = [5, 1.5, True, [1, 2], {"a": 1}, b"bytes"]
"""Values of another type than a string: a file's numbers, booleans,
arrays and tables, and Python's bytes."""


def _text_values(accepted: Text) -> tuple[list[object], list[object]]:
    """Strings ``accepted`` takes, and values it refuses."""
    if accepted.table:
        inside: list[object] = [{}, {"bootstrap.servers": "h:1"}]
        outside: list[object] = [*NOT_STRINGS, "a-string", {"retries": 5}]
        (inside if accepted.optional else outside).append(None)
        return inside, outside
    inside = list(accepted.choices) or ["a-name", "/a/path"]
    if accepted.listed:  # a list, and Kafka's string of names
        inside += [list(inside), tuple(inside), ",".join(map(str, inside))]
        outside = [5, 1.5, True, [1, 2], {"a": 1}, b"bytes", ["a-name", 5]]
    else:
        outside = list(NOT_STRINGS)
    if accepted.choices:
        outside.append("none-of-them")
        if accepted.any_case:
            inside += [choice.upper() for choice in accepted.choices]
        else:
            outside += [c.upper() for c in accepted.choices if c and c.upper() != c]
    elif accepted.nonempty:
        outside.append("")
    else:
        inside.append("")
    (inside if accepted.optional else outside).append(None)
    return inside, outside


@pytest.mark.parametrize(
    ("config", "setting", "accepted"), TEXT_CASES, ids=map(_case_id, TEXT_CASES)
)
def test_each_string_takes_its_kind_and_is_refused_another_type(
    config: type[Any], setting: str, accepted: Text
) -> None:
    inside, outside = _text_values(accepted)
    inside = TEXTS_INSIDE.get((config, setting), inside)
    base = REQUIRED.get(config, {})
    for value in inside:
        config(**{**base, setting: value})
    for value in outside:
        with pytest.raises(ConfigOutOfRange) as refused:
            config(**{**base, setting: value})
        assert (refused.value.setting, refused.value.accepted) == (setting, accepted.phrase())
        if accepted.secret:
            # None's repr is in its stand-in's words, "a NoneType"
            assert value is None or repr(value) not in str(refused.value)
            assert f"a {type(value).__name__} (not shown)" in str(refused.value)
        else:
            assert refused.value.value is value
            assert str(refused.value) == f"{setting} must be {accepted.phrase()}, not {value!r}"


TEXT_FILE_CASES = [case for case in TEXT_CASES if _file_key(case[0], case[1]) is not None]
"""The strings a file sets by their names (DelegationTokenConfig's secret
comes from [server]'s delegation.token.secret.key.file, a path)."""

TOML_NOT_STRINGS = {"5": 5, "1.5": 1.5, "true": True, "[1, 2]": [1, 2], "{ a = 1 }": {"a": 1}}
"""TOML values of another type than a string, and what Python reads of each."""


@pytest.mark.parametrize(
    ("config", "setting", "accepted"), TEXT_FILE_CASES, ids=map(_case_id, TEXT_FILE_CASES)
)
def test_the_config_file_refuses_another_type_for_a_string_in_the_configs_words(
    tmp_path: Path, config: type[Any], setting: str, accepted: Text
) -> None:
    """One message naming the file, its table and the key, never a
    traceback: TablesConfig's namespace of a number raised TypeError from
    Python, and the file's [mirror] and [server] tables each had words of
    their own."""
    section = _file_key(config, setting)
    key = _written_key(config, setting)
    path = tmp_path / "tidelog.toml"
    refused = {**TOML_NOT_STRINGS}
    if accepted.choices:
        refused['"none-of-them"'] = "none-of-them"
    if accepted.table:  # its numbers are librdkafka's strings, "5"
        del refused["{ a = 1 }"]
        refused["{ a = [1] }"] = {"a": [1]}
    for written, value in refused.items():
        path.write_text(f"[{section}]\n{FILE_REQUIRED.get(str(section), '')}{key} = {written}\n")
        with pytest.raises(ConfigFileError) as from_file:
            load_config_file(path)
        shown = f"a {type(value).__name__} (not shown)" if accepted.secret else repr(value)
        words = f"{key} must be {accepted.phrase()}, not {shown}"
        assert str(from_file.value) == f"{path}: [{section}]: {words}"
        assert isinstance(from_file.value.__cause__, ConfigOutOfRange)


def test_a_tables_namespace_with_a_dot_is_refused_by_name() -> None:
    with pytest.raises(ConfigOutOfRange) as refused:
        TablesConfig(namespace="a.b")
    assert (refused.value.setting, refused.value.value) == ("namespace", "a.b")


@pytest.mark.parametrize("config", [HttpConfig, RegistryConfig])
@pytest.mark.parametrize("listen", [5, "127.0.0.1:80", ("127.0.0.1",), (80, "h"), ["h", 80]])
def test_an_http_listen_that_is_no_host_and_port_is_refused_by_name(
    config: type[HttpConfig | RegistryConfig], listen: object
) -> None:
    with pytest.raises(ConfigOutOfRange) as refused:
        config(listen=listen)  # type: ignore[arg-type]
    assert (refused.value.setting, refused.value.value) == ("listen", listen)


@pytest.mark.parametrize(
    ("written", "refusal"),
    [
        ("[server]\nlisten = 9092\n", "[server]: listen must be a string, not 9092"),
        ("[server]\nadvertised = [1]\n", "[server]: advertised must be a string, not [1]"),
        ("[server]\nlisteners = 5\n", "[server]: listeners must be a string, not 5"),
        (
            '[server]\n"advertised.listeners" = 5\n',
            "[server]: advertised.listeners must be a string, not 5",
        ),
        ('[server]\n"super.users" = [1]\n', "[server]: super.users must be a list of names"),
        ("[engine]\ndata_dir = 5\n", "[engine]: data_dir must be a string, not 5"),
        ("[engine]\nobject_store = true\n", "[engine]: object_store must be a string, not True"),
        ("server = 5\n", "server must be a table, [server], not 5"),
        ('mirror = "x"\n', "mirror must be a table, [mirror], not 'x'"),
        ('[tables]\nnamespace = "a.b"\n', "[tables]: namespace must be one name, without '.'"),
    ],
)
def test_other_values_of_the_wrong_type_are_refused_with_the_key_named(
    tmp_path: Path, written: str, refusal: str
) -> None:
    path = tmp_path / "tidelog.toml"
    path.write_text(written)
    with pytest.raises(ConfigFileError) as refused:
        load_config_file(path)
    assert str(refused.value).startswith(f"{path}: {refusal}")


@pytest.mark.parametrize("key", ["listen", "advertised"])
@pytest.mark.parametrize("port", [-1, 65536])
def test_a_port_a_file_gives_in_an_address_is_refused_in_the_configs_words(
    tmp_path: Path, key: str, port: int
) -> None:
    with pytest.raises(ConfigOutOfRange) as refused:
        ServerConfig(**{"port" if key == "listen" else "advertised_port": port})
    path = tmp_path / "tidelog.toml"
    path.write_text(f'[server]\n{key} = "127.0.0.1:{port}"\n')
    with pytest.raises(ConfigFileError) as from_file:
        load_config_file(path)
    assert str(from_file.value) == f"{path}: [server]: {refused.value}"
    path.write_text(f'[server]\n{key} = "127.0.0.1:65535"\n')
    load_config_file(path)


@pytest.mark.parametrize(
    ("config", "section"), [(HttpConfig, "http"), (RegistryConfig, "schema_registry")]
)
@pytest.mark.parametrize("port", [-1, 65536])
def test_an_http_listeners_port_is_refused_from_python_as_from_a_file(
    tmp_path: Path, config: type[HttpConfig | RegistryConfig], section: str, port: int
) -> None:
    with pytest.raises(ConfigOutOfRange) as refused:
        config(listen=("127.0.0.1", port))
    for not_a_port in (True, 80.0, None):
        with pytest.raises(ConfigOutOfRange):
            config(listen=("127.0.0.1", not_a_port))  # type: ignore[arg-type]
    path = tmp_path / "tidelog.toml"
    path.write_text(f'[{section}]\nlisten = "127.0.0.1:{port}"\n')
    with pytest.raises(ConfigFileError) as from_file:
        load_config_file(path)
    assert str(from_file.value) == f"{path}: [{section}]: {refused.value}"
    assert config(listen=("127.0.0.1", 65535)).listen == ("127.0.0.1", 65535)


@pytest.mark.parametrize("setting", ["listeners", "advertised_listeners"])
@pytest.mark.parametrize("port", [-1, 65536, True, 9092.0, None])
def test_a_listeners_port_out_of_range_is_refused_from_python_as_from_a_file(
    tmp_path: Path, setting: str, port: object
) -> None:
    listener = Listener("PLAINTEXT", "127.0.0.1", port)  # type: ignore[arg-type]
    with pytest.raises(ConfigOutOfRange) as refused:
        ServerConfig(**{setting: (listener,)})
    assert refused.value.setting == f"{setting}' port"
    path = tmp_path / "tidelog.toml"
    key = setting.replace("_", ".")
    path.write_text(f'[server]\n"{key}" = "PLAINTEXT://127.0.0.1:{port}"\n')
    with pytest.raises(ConfigFileError):
        load_config_file(path)
    at_the_bound = Listener("PLAINTEXT", "127.0.0.1", 65535)
    assert getattr(ServerConfig(**{setting: (at_the_bound,)}), setting) == (at_the_bound,)


@given(st.floats(min_value=0, allow_nan=False, allow_infinity=False))
def test_a_snapshot_age_the_tables_config_takes_is_a_whole_number_of_milliseconds(
    keep_snapshots_s: float,
) -> None:
    # The tables' expiry keeps round(keep_snapshots_s * 1000) ms of
    # snapshots (engine/tables/service.py): past a LONG of milliseconds
    # that product is an infinity, and every table pass would raise.
    # Without a bound, 1e306 s is taken and round(1e309) raises.
    try:
        config = TablesConfig(keep_snapshots_s=keep_snapshots_s)
    except ConfigOutOfRange:
        assert keep_snapshots_s > KEEP_SNAPSHOTS_S_MOST
        return
    assert 0 <= round(config.keep_snapshots_s * 1000) <= LONG_MAX + 1024


@given(st.floats(min_value=1, allow_nan=False, allow_infinity=False))
def test_an_offsets_retention_the_group_config_takes_is_a_whole_number_of_milliseconds(
    minutes: float,
) -> None:
    # Kafka's offsets.retention.minutes is an INT; unbounded, 1e305 minutes
    # was taken and offsets_retention_ms raised OverflowError.
    try:
        config = GroupConfig(offsets_retention_minutes=minutes)
    except ConfigOutOfRange:
        assert minutes > 2**31 - 1
        return
    assert 60_000 <= config.offsets_retention_ms <= (2**31 - 1) * 60_000


MID_GROUP_BOUNDS = {
    "group_consumer_min_session_timeout_ms": 100,
    "group_consumer_session_timeout_ms": 1000,
    "group_consumer_max_session_timeout_ms": 10_000,
    "group_consumer_min_heartbeat_interval_ms": 10,
    "group_consumer_heartbeat_interval_ms": 50,
    "group_consumer_max_heartbeat_interval_ms": 500,
}
"""Consumer-group bounds each clear of the others."""
_MS = "group_consumer_min_session_timeout_ms"
_S = "group_consumer_session_timeout_ms"
_XS = "group_consumer_max_session_timeout_ms"
_MH = "group_consumer_min_heartbeat_interval_ms"
_H = "group_consumer_heartbeat_interval_ms"
_XH = "group_consumer_max_heartbeat_interval_ms"
ORDER_CASES = [
    # (the order, settings at its bound beside MID_GROUP_BOUNDS, the value one step past it)
    ((_XH, "at least", _MH), {_MH: 50, _XH: 50}, 49),
    ((_H, "at least", _MH), {_H: 10}, 9),
    ((_H, "at most", _XH), {_H: 500}, 501),
    ((_XS, "at least", _MS), {_MS: 1000, _XS: 1000}, 999),
    ((_S, "at least", _MS), {_S: 100}, 99),
    ((_S, "at most", _XS), {_S: 10_000}, 10_001),
    ((_H, "below", _S), {_H: 499, _S: 500}, 500),
]


def test_the_order_cases_are_every_order() -> None:
    assert [order for order, _, _ in ORDER_CASES] == list(GROUP_ORDER)


@pytest.mark.parametrize(("order", "at_bound", "past"), ORDER_CASES, ids=str)
def test_settings_ordered_against_one_another_keep_their_order(
    tmp_path: Path, order: tuple[str, str, str], at_bound: dict[str, int], past: int
) -> None:
    """Each of Kafka's GroupCoordinatorConfig requirements: the bound
    accepted (one step short of it for the strict one), one step past it
    refused with both settings named, from Python and from the file."""
    setting, relation, other = order
    accepted_config = {**MID_GROUP_BOUNDS, **at_bound}
    GroupConfig(**accepted_config)
    refused_config = {**accepted_config, setting: past}
    with pytest.raises(ConfigOutOfRange) as refused:
        GroupConfig(**refused_config)
    accepted = f"{relation} {other} ({refused_config[other]})"
    assert (refused.value.setting, refused.value.value, refused.value.accepted) == (
        setting,
        past,
        accepted,
    )
    path = tmp_path / "tidelog.toml"
    path.write_text("[engine]\n" + "".join(f"{k} = {v}\n" for k, v in accepted_config.items()))
    load_config_file(path)
    path.write_text("[engine]\n" + "".join(f"{k} = {v}\n" for k, v in refused_config.items()))
    refusal = f"[engine]: {setting} must be {accepted}"
    with pytest.raises(ConfigFileError, match=re.escape(refusal)):
        load_config_file(path)


def _toml(value: object) -> str:
    """``value`` as TOML writes it (its nan and inf are Python's without the case)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf, -inf
    return repr(value)


def test_an_unuploaded_bound_below_one_wal_segment_opens_and_takes_larger_records(
    tmp_path: Path,
) -> None:
    """The bound is checked before an append, so a record larger than it
    (a data batch, a state record) passes it once the bytes before it are
    uploaded: a bound under a WAL segment (a memory budget smaller than the
    default 64 MiB segments) is a config the engine runs with."""
    store = StreamStoreConfig(
        wal_preallocate=False,
        wal_segment_bytes=1 << 20,
        max_unuploaded_bytes=WAL_SEGMENT_LEAST,
        unpaced_headroom_bytes=0,
        upload_interval_s=0.05,
    )
    assert StreamStoreConfig(max_unuploaded_bytes=256 * 1024).wal_segment_bytes == 64 << 20
    larger = bytes(2 * WAL_SEGMENT_LEAST)
    with engine.open(
        tmp_path / "data", LocalStore(tmp_path / "objects"), EngineConfig(store=store)
    ) as opened:
        for topic in ("t", "u", "v"):
            opened.create_topic(topic, 3)
        opened.produce("t", 0, batch([larger]))
        opened.produce("t", 0, batch([b"after"]))
        assert [r.value for r in read_partition(opened, "t", 0)] == [larger, b"after"]


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        (StreamStoreConfig, "stream_object_bytes"),
        (StreamStoreConfig, "replay_rest_ratio"),
        (EngineConfig, "checkpoint_bytes"),
        (StreamStoreConfig, "hedge_floor_ms"),
    ],
)
@pytest.mark.parametrize("value", [2**63, 10**400], ids=["2**63", "10**400"])
def test_an_int_past_64_bits_is_refused_as_out_of_range(
    tmp_path: Path, config: type[Any], setting: str, value: int
) -> None:
    """Past float's range, comparing such an int with a float raised
    OverflowError, which is no ValueError: the file's reader let it out
    as a traceback. Past a Java long, no setting has a meaning."""
    with pytest.raises(ConfigOutOfRange) as refused:
        config(**{setting: value})
    assert refused.value.setting == setting
    path = tmp_path / "tidelog.toml"
    path.write_text(f"[{FILE_SECTION[config]}]\n{setting} = {value}\n")
    with pytest.raises(ConfigFileError, match=f"{setting} must be"):
        load_config_file(path)
    assert getattr(config(**{setting: 2**63 - 1}), setting) == 2**63 - 1


def test_a_migration_policy_is_refused_in_the_same_words_from_python_and_a_file(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigOutOfRange) as refused:
        GroupConfig(group_consumer_migration_policy="sideways")
    assert refused.value.setting == "group_consumer_migration_policy"
    path = tmp_path / "tidelog.toml"
    path.write_text('[engine]\ngroup_consumer_migration_policy = "sideways"\n')
    with pytest.raises(ConfigFileError) as from_file:
        load_config_file(path)
    assert str(from_file.value) == f"{path}: [engine]: {refused.value}"


def test_a_config_that_is_not_a_durability_is_refused_by_name() -> None:
    with pytest.raises(ConfigOutOfRange, match="durability must be one of fsync") as refused:
        StreamStoreConfig(durability="always")
    assert refused.value.setting == "durability"
    assert StreamStoreConfig(durability="interval").durability is Durability.INTERVAL


def test_a_durability_given_by_name_makes_the_same_config_as_the_enum(tmp_path: Path) -> None:
    assert StreamStoreConfig(durability="fsync") == StreamStoreConfig()
    path = tmp_path / "tidelog.toml"
    path.write_text('[store]\ndurability = "none"\n')
    assert load_config_file(path).store == StreamStoreConfig(durability=Durability.NONE)


def test_a_topic_default_is_refused_when_the_config_is_made() -> None:
    with pytest.raises(engine.InvalidConfig, match=r"retention\.ms"):
        EngineConfig(topic_defaults={"retention.ms": "a week"})


def _values(accepted: Range, cap: float) -> st.SearchStrategy[float | None]:
    """Values of ``accepted``, at most ``cap`` where the range is wider (a
    WAL segment of 2 GiB, or a year's interval, opens as well but would
    take the disk or the test's time)."""
    least = accepted.least
    most = min(accepted.most if accepted.most is not None else cap, max(cap, least))
    if accepted.integer:
        values: st.SearchStrategy[float | None] = st.integers(int(least), int(most))
    else:
        values = st.floats(least, most, exclude_min=accepted.above)
    if accepted.off:
        values = st.one_of(st.just(least), values, st.just(0))
    return st.one_of(values, st.none()) if accepted.optional else values


_CAPS = {
    "wal_segment_bytes": 1 << 20,
    "read_workers": 8,
    "upload_interval_s": 0.5,
    "remote_linger_s": 0.05,
    "open_timeout_s": 1.0,
    "poll_interval_s": 0.5,
}
"""The largest value drawn for a setting whose larger values cost the test
disk or time; 1 << 30 (bytes, counts) or 60 (seconds) for the others."""


def _settings(table: dict[str, Range]) -> st.SearchStrategy[dict[str, Any]]:
    drawn = {
        setting: _values(accepted, _CAPS.get(setting, 1 << 30 if accepted.integer else 60.0))
        for setting, accepted in table.items()
    }
    return st.fixed_dictionaries({}, optional=drawn)


EMBEDDED_CASES = [case for case in CASES if case[0] in EMBEDDED]
SERVED_CASES = [case for case in CASES if case[0] in SERVED]


def _strays(cases: list[tuple[type[Any], str, Range]]) -> st.SearchStrategy[Any]:
    """Nothing, or one setting of ``cases`` given a value outside its range."""
    return st.one_of(
        st.none(),
        st.sampled_from(cases).flatmap(
            lambda case: st.tuples(st.just(case), st.sampled_from(_boundaries(case[2])[1]))
        ),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    store=_settings(STORE_RANGES),
    own=_settings(ENGINE_RANGES),
    groups=_settings(GROUP_RANGES),
    transactions=_settings(TRANSACTION_RANGES),
    tables=_settings(TABLES_RANGES),
    tokens=_settings(DELEGATION_TOKEN_RANGES),
    stray=_strays(EMBEDDED_CASES),
)
def test_any_config_made_opens_an_engine_that_appends_and_reads(
    store: dict[str, Any],
    own: dict[str, Any],
    groups: dict[str, Any],
    transactions: dict[str, Any],
    tables: dict[str, Any],
    tokens: dict[str, Any],
    stray: tuple[tuple[type[Any], str, Range], object] | None,
) -> None:
    """Settings drawn from their ranges, and at times one drawn outside
    its range: the configs are refused when they are made (naming that
    one), or the engine opens, appends and reads."""
    if stray is not None:
        (config_type, setting, _), value = stray
        drawn = {
            EngineConfig: own,
            StreamStoreConfig: store,
            GroupConfig: groups,
            TransactionConfig: transactions,
            TablesConfig: tables,
            DelegationTokenConfig: tokens,
        }
        drawn[config_type][setting] = value
    try:
        config = EngineConfig(
            store=StreamStoreConfig(wal_preallocate=False, **store),
            groups=_group_config(groups),
            transactions=TransactionConfig(**transactions),
            tables=TablesConfig(**tables),
            delegation_tokens=DelegationTokenConfig("a secret", **tokens),
            **own,
        )
    except ConfigOutOfRange as refused:
        assert stray is not None
        assert refused.setting == stray[0][1]
        return
    # One directory per example, removed when it ends: pytest's tmp_path
    # would keep every example's WAL and objects until the run's own
    # directory is removed.
    with tempfile.TemporaryDirectory(prefix="config-ranges-") as name:
        directory = Path(name)
        with engine.open(directory / "data", LocalStore(directory / "objects"), config) as opened:
            opened.create_topic("t", 1)
            opened.produce("t", 0, batch([b"one record"]))
            assert [r.value for r in read_partition(opened, "t", 0)] == [b"one record"]


def _whole_range(accepted: Range) -> st.SearchStrategy[float | None]:
    """Any value of ``accepted``, however large: a config made, never opened."""
    return _values(accepted, LONG_MAX if accepted.integer else 1e300)


def _served_settings(config: type[Any]) -> st.SearchStrategy[dict[str, Any]]:
    drawn = {setting: _whole_range(accepted) for setting, accepted in SERVED[config].items()}
    return st.fixed_dictionaries({}, optional=drawn)


@settings(max_examples=200, deadline=None)
@given(
    server=_served_settings(ServerConfig),
    http=_served_settings(HttpConfig),
    registry=_served_settings(RegistryConfig),
    stray=_strays(SERVED_CASES),
)
def test_any_server_config_a_file_sets_is_the_one_python_makes(
    tmp_path_factory: pytest.TempPathFactory,
    server: dict[str, Any],
    http: dict[str, Any],
    registry: dict[str, Any],
    stray: tuple[tuple[type[Any], str, Range], object] | None,
) -> None:
    """Settings drawn from the whole of their ranges, and at times one
    drawn outside its range: the [server], [http] and [schema_registry]
    tables of a file make the configs Python makes of the same settings,
    or are refused in the words Python's refusal has."""
    drawn = {ServerConfig: server, HttpConfig: http, RegistryConfig: registry}
    if stray is not None:
        (config_type, setting, _), value = stray
        drawn[config_type][setting] = value
    made: dict[type[Any], Any] = {}
    refusal: ConfigOutOfRange | None = None
    for config_type, settings_of in drawn.items():
        try:
            made[config_type] = config_type(**settings_of)
        except ConfigOutOfRange as refused:
            assert stray is not None and (refused.setting, config_type) == (
                stray[0][1],
                stray[0][0],
            )
            refusal = refused
    assert (refusal is None) == (stray is None)
    if stray is not None:
        (_, setting, accepted), value = stray
        if value is None or isinstance(value, bool | str):
            return  # no TOML value, or a wrong type the file refuses as one
        if isinstance(value, float) and accepted.integer:
            return  # a wrong type, refused as one by the file's type check first
    path = tmp_path_factory.mktemp("served") / "tidelog.toml"
    lines = []
    for config_type, settings_of in drawn.items():
        lines.append(f"[{FILE_SECTION[config_type]}]")
        for setting, value in settings_of.items():
            if value is None:
                continue  # left out: None is such a setting's default
            if config_type is ServerConfig and setting == "port":
                lines.append(f'listen = "127.0.0.1:{value}"')
            elif config_type is ServerConfig and setting == "advertised_port":
                lines.append(f'advertised = "example.test:{value}"')
            else:
                lines.append(f"{setting} = {_toml(value)}")
    path.write_text("\n".join(lines) + "\n")
    if refusal is not None:
        with pytest.raises(ConfigFileError) as from_file:
            load_config_file(path)
        assert str(refusal) in str(from_file.value)
        return
    loaded = load_config_file(path)
    assert (loaded.server, loaded.http, loaded.schema_registry) == (
        _with_advertised_host(made[ServerConfig], server),
        made[HttpConfig],
        made[RegistryConfig],
    )


def _with_advertised_host(made: ServerConfig, settings_of: dict[str, Any]) -> ServerConfig:
    """``made`` as a file with its ``advertised`` key sets it: a host beside the port."""
    if settings_of.get("advertised_port") is not None:
        return replace(made, advertised_host="example.test")
    return made


def _group_config(settings: dict[str, Any]) -> GroupConfig:
    """GroupConfig of ``settings``; if they break an order of two settings,
    that is refused here, when the config is made, and the defaults stand
    in (an engine is still opened)."""
    try:
        return GroupConfig(**settings)
    except ConfigOutOfRange as refused:
        if (refused.setting, refused.accepted.rsplit(" (", 1)[0]) not in [
            (s, f"{r} {o}") for s, r, o in GROUP_ORDER
        ]:
            raise
        return GroupConfig()


def _rows(table: dict[str, Range]) -> list[tuple[str, str]]:
    """The settings of ``table`` grouped by range, as the docs' tables
    list them: the keys in backticks, and the range in words."""
    grouped: dict[str, list[str]] = {}
    for setting, accepted in table.items():
        grouped.setdefault(accepted.describe(), []).append(f"`{setting}`")
    return [(", ".join(keys), accepted) for accepted, keys in grouped.items()]


def _table_rows(text: str, first: str) -> list[tuple[str, str, str]]:
    found = re.findall(rf"^\| ({re.escape(first)}) \| (.+?) \| (.+?) \|$", text, re.MULTILINE)
    return [(a, b, c) for a, b, c in found]


def test_docs_engine_md_lists_the_embedded_apis_ranges() -> None:
    text = (DOCS / "engine.md").read_text()
    documented = [row for config in EMBEDDED for row in _table_rows(text, f"`{config.__name__}`")]
    expected = [
        (f"`{config.__name__}`", keys, accepted)
        for config, table in EMBEDDED.items()
        for keys, accepted in _rows(table)
    ]
    assert documented == expected


FILE_TABLES: dict[str, dict[str, Range]] = {
    "server": {
        **{k: v for k, v in SERVER_RANGES.items() if k not in SET_BY_OTHER_NAMES[ServerConfig]},
        **{f"sasl_oauthbearer_{k}": v for k, v in OAUTH_RANGES.items()},
    },
    "engine": {**ENGINE_RANGES, **GROUP_RANGES, **TRANSACTION_RANGES},
    "store": STORE_RANGES,
    "http": HTTP_RANGES,
    "schema_registry": REGISTRY_RANGES,
    "tables": TABLES_RANGES,
    "mirror": MIRROR_RANGES,
}
"""The ranges of each table of the config file, by its keys."""


@pytest.mark.parametrize("section", FILE_TABLES)
def test_docs_server_md_lists_the_ranges_of_each_table_of_the_file(section: str) -> None:
    """[server]'s keys may be written as Kafka's dotted names, as the file
    takes them."""
    text = (DOCS / "server.md").read_text()
    documented = [
        (table, keys.replace(".", "_"), accepted)
        for table, keys, accepted in _table_rows(text, f"`[{section}]`")
    ]
    assert documented == [
        (f"`[{section}]`", keys, accepted) for keys, accepted in _rows(FILE_TABLES[section])
    ]


def test_docs_server_md_lists_the_choices_of_each_table_of_the_file() -> None:
    """Its table of choices: every choice a file sets by its key, with its set."""
    expected = sorted(
        (
            str(_file_key(config, setting)),
            setting,
            ", ".join(name or '""' for name in accepted.choices)
            + (" (in any case)" if accepted.any_case else "")
            + (" (a list)" if accepted.listed else ""),
        )
        for config, setting, accepted in TEXT_FILE_CASES
        if accepted.choices
    )
    choices = {(section, setting) for section, setting, _ in expected}
    rows = re.findall(r"^\| `([\w.]+)` \| `\[(\w+)\]` \| (.+?) \|$", text_of_server_md(), re.M)
    documented = sorted(
        (section, key.replace(".", "_"), accepted)
        for key, section, accepted in rows
        if (section, key.replace(".", "_")) in choices
    )
    assert documented == expected


def text_of_server_md() -> str:
    return (DOCS / "server.md").read_text()


def test_tidelog_mirror_refuses_an_interval_out_of_range_in_the_tables_words(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["mirror", "--from", "127.0.0.1:1", "--to", "127.0.0.1:2", "--checkpoint-interval"]
    assert main([*argv, "0"]) != 0
    accepted = MIRROR_RANGES["checkpoint_interval_s"].phrase()
    assert f"checkpoint_interval_s must be {accepted}, not 0.0" in capsys.readouterr().err


SERVER_DOTTED = sorted(
    {name for name in (*SERVER_TEXTS, *SERVER_RANGES) if "_" in name}
    - {"advertised_host", "advertised_port"}
    | {f"sasl_oauthbearer_{name}" for name in (*OAUTH_TEXTS, *OAUTH_RANGES, "unsecured")}
)
"""[server] settings a file may write in Kafka's dotted form (the
advertised host and port are set by ``advertised``, never by keys of their own)."""


@pytest.mark.parametrize("setting", SERVER_DOTTED)
def test_a_refusal_names_a_server_key_as_the_file_wrote_it(tmp_path: Path, setting: str) -> None:
    """``ssl.client.auth = "always"`` was refused as ``ssl_client_auth``: a
    key the file (and docs/server.md) does not have, and a reader searching
    the file for it finds nothing."""
    dotted = setting.replace("_", ".")
    path = tmp_path / "tidelog.toml"
    path.write_text(f'[server]\n"{dotted}" = {{ of = [1] }}\n')
    with pytest.raises(ConfigFileError) as from_file:
        load_config_file(path)
    assert f"[server]: {dotted} must be " in str(from_file.value)
    assert f"{setting} must be" not in str(from_file.value)


@pytest.mark.parametrize(
    ("written", "named"),
    [
        ('"max.conections" = 1\n', ["max.conections"]),
        ("max_conections = 1\n", ["max_conections"]),
        ('"sasl.oauthbearer.jwks.url" = "x"\n', ["sasl.oauthbearer.jwks.url"]),
        (
            '"ssl.key.pasword" = "x"\nsasl_oauthbearer_jwks_url = "x"\n',
            ["sasl_oauthbearer_jwks_url", "ssl.key.pasword"],
        ),
    ],
)
def test_unknown_server_keys_are_named_as_the_file_wrote_them(
    tmp_path: Path, written: str, named: list[str]
) -> None:
    """``"max.conections"`` was named ``max_conections``, a key the file
    does not have; an unknown sasl.oauthbearer.* key was refused in words
    of its own, apart from the others."""
    path = tmp_path / "tidelog.toml"
    path.write_text(f"[server]\n{written}")
    with pytest.raises(ConfigFileError) as refused:
        load_config_file(path)
    assert str(refused.value) == f"{path}: unknown keys in [server]: {named}"


def test_the_group_assignors_offered_are_the_ones_there_are() -> None:
    assert set(SERVER_ASSIGNORS) == set(ASSIGNORS)
    assert GroupConfig().group_consumer_assignors == SERVER_ASSIGNORS
    assert GroupConfig(group_consumer_assignors="range, uniform").group_consumer_assignors == (
        "range",
        "uniform",
    )


@pytest.mark.parametrize("setting", ["listeners", "advertised_listeners"])
@pytest.mark.parametrize(
    ("field", "listener", "value"),
    [
        ("name", Listener("SASL_FOO", "127.0.0.1", 9092), "SASL_FOO"),
        ("host", Listener("PLAINTEXT", 5, 9092), 5),  # type: ignore[arg-type]
        ("port", Listener("PLAINTEXT", "127.0.0.1", 65536), 65536),
    ],
)
def test_a_listener_is_refused_from_its_table_naming_the_key_as_written(
    tmp_path: Path, setting: str, field: str, listener: Listener, value: object
) -> None:
    """A listener's name was refused by parse_listeners alone, in words of
    its own that named neither key, and one made in Python was taken and
    failed at the bind or at Metadata; its host was never checked."""
    accepted = {**LISTENER_TEXTS, **LISTENER_RANGES}[field].phrase()
    with pytest.raises(ConfigOutOfRange) as refused:
        plain = (Listener("PLAINTEXT", "127.0.0.1", 9092),)
        ServerConfig(**{"listeners": plain, setting: (listener,)})
    assert str(refused.value) == f"{setting}' {field} must be {accepted}, not {value!r}"
    if field == "host":
        return  # a file's listener is parsed from a string: its host is one
    dotted = setting.replace("_", ".")
    path = tmp_path / "tidelog.toml"
    path.write_text(
        '[server]\nlisteners = "PLAINTEXT://127.0.0.1:9092"\n'
        f'"{dotted}" = "{str(listener).replace("PLAINTEXT", listener.name)}"\n'
        if setting == "advertised_listeners"
        else f'[server]\n"{dotted}" = "{listener}"\n'
    )
    with pytest.raises(ConfigFileError) as from_file:
        load_config_file(path)
    assert (
        str(from_file.value)
        == f"{path}: [server]: {dotted}' {field} must be {accepted}, not {value!r}"
    )


@pytest.mark.parametrize(
    ("config", "flag", "key"),
    [
        (AuthorizationConfig, "allow_everyone_if_no_acl_found", None),
        (OAuthBearerConfig, "unsecured", "sasl.oauthbearer.unsecured"),
    ],
)
@pytest.mark.parametrize("value", ["false", 0, 1, None])
def test_a_flag_that_is_not_true_or_false_is_refused_by_name(
    tmp_path: Path, config: type[Any], flag: str, key: str | None, value: object
) -> None:
    """``"false"`` was taken, and is true to Python."""
    with pytest.raises(ConfigOutOfRange) as refused:
        config(**{flag: value})
    assert str(refused.value) == f"{flag} must be true or false, not {value!r}"
    if key is None or value is None:
        return
    path = tmp_path / "tidelog.toml"
    path.write_text(
        f'[server]\n"{key}" = {_toml(value) if value != "false" else chr(34) + "false" + chr(34)}\n'
    )
    with pytest.raises(ConfigFileError) as from_file:
        load_config_file(path)
    assert str(from_file.value) == f"{path}: [server]: {key} must be true or false, not {value!r}"


def test_a_mirror_property_written_as_a_toml_number_or_boolean_is_librdkafkas_string(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tidelog.toml"
    path.write_text(
        '[mirror]\nto = "target-1:9092"\n'
        '[mirror.to_config]\n"linger.ms" = 5\n"enable.idempotence" = true\n"acks" = "all"\n'
    )
    loaded = load_config_file(path)
    assert loaded.mirror is not None
    settings = settings_from_table(loaded.mirror, "source-1:9092")
    assert settings.target_config == {"linger.ms": "5", "enable.idempotence": "true", "acks": "all"}


def test_a_listeners_names_are_the_security_protocols() -> None:
    assert LISTENER_TEXTS["name"].choices == tuple(SecurityProtocol.__members__)


def test_a_refused_mirror_table_of_client_properties_never_shows_their_values(
    tmp_path: Path,
) -> None:
    """A side's properties hold its passwords (sasl.password): a refusal
    showed the whole table, password and all, to the terminal and the log."""
    path = tmp_path / "tidelog.toml"
    path.write_text(
        '[mirror]\nto = "target-1:9092"\n'
        '[mirror.to_config]\n"sasl.password" = "hunter2"\n"retries" = [1]\n'
    )
    with pytest.raises(ConfigFileError) as from_file:
        load_config_file(path)
    assert "hunter2" not in str(from_file.value)
    assert str(from_file.value).endswith(
        "to_config must be a table of strings, not a dict (not shown)"
    )
    with pytest.raises(ConfigOutOfRange) as from_python:
        MirrorSettings("s:1", "t:1", source_config={"sasl.password": "hunter2", "retries": 5})  # type: ignore[dict-item]
    assert "hunter2" not in str(from_python.value)


@pytest.mark.parametrize(
    ("given", "twice"),
    [
        ("uniform,uniform", "uniform"),
        ("range, uniform, range", "range"),
        (["range", "range"], "range"),
    ],
)
def test_an_assignor_named_twice_is_refused_naming_it(given: object, twice: str) -> None:
    with pytest.raises(ConfigOutOfRange) as refused:
        GroupConfig(group_consumer_assignors=given)  # type: ignore[arg-type]
    assert refused.value.setting == "group_consumer_assignors"
    assert f"{twice!r} is named twice" in str(refused.value)


def test_a_sasl_mechanism_named_twice_is_refused_naming_it() -> None:
    with pytest.raises(ConfigOutOfRange, match="'PLAIN' is named twice"):
        ServerConfig(sasl_enabled_mechanisms="PLAIN,SCRAM-SHA-256,PLAIN")  # type: ignore[arg-type]


def test_a_choice_named_twice_in_another_case_is_refused_when_any_case() -> None:
    accepted = Text(choices=("a", "b"), any_case=True, listed=True)
    assert accepted.repeated("a,B,A") == "A"
    assert not accepted.accepts("a,B,A")
    assert accepted.accepts("a,B")


def test_free_names_listed_may_repeat() -> None:
    """super.users and an audience name no set of choices: a name given
    twice there is harmless, and kept as given."""
    assert AuthorizationConfig(super_users="User:a;User:a").super_users == ("User:a", "User:a")
    assert Text(listed=True).accepts("aud,aud")
