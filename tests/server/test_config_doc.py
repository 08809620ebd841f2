"""The config file docs/server.md shows is the parser's: every key each
section takes is there (commented where it has no default), each at its
default unless it is an example; and a value of the wrong type, or outside
the range the doc's table of ranges gives, is refused when the file is
read, naming its section and key, not at the first use.
Its table of broker configs, and docs/engine.md's topic configs, are the
engine's."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import fields, replace
from pathlib import Path

import pytest

from engine.broker_config import BROKER_CONFIG_DEFS
from engine.config import CONFIG_DEFS
from engine.engine import EngineConfig
from engine.groups.config import GroupConfig
from engine.mirror.settings import SECTION_KEYS as MIRROR_KEYS
from engine.mirror.settings import MirrorSettingsError, settings_from_table
from engine.server import config
from engine.server.config import ConfigFileError, ServerConfig, load_config_file
from engine.server.http_config import KEYS as HTTP_KEYS
from engine.server.http_config import HttpConfig
from engine.server.registry_config import KEYS as REGISTRY_KEYS
from engine.server.registry_config import RegistryConfig
from engine.server.sasl.oauth_config import PREFIX as OAUTH_PREFIX
from engine.server.sasl.oauth_config import OAuthBearerConfig
from engine.tables.settings import TablesConfig
from engine.transactions.config import TransactionConfig
from s3stream import StreamStoreConfig
from tests import docspec
from tests.engine.test_config_ranges import companions

DOC = Path(__file__).resolve().parents[2] / "docs" / "server.md"


def _block() -> str:
    return DOC.read_text().split("```toml\n", 1)[1].split("```", 1)[0]


def _settings() -> Iterator[tuple[str, str]]:
    """(section, line) of each line of the block but the section headers,
    commented ones uncommented."""
    section = ""
    for line in _block().splitlines():
        text = line.lstrip("#").strip()
        header = re.match(r"^\[([\w.]+)\]", text)
        if header is not None:
            section = header.group(1)
        else:
            yield section, text


def _documented() -> dict[str, set[str]]:
    """Each section's keys in the block, commented ones too; [server]'s
    dotted (Kafka) names as the parser reads them, dots made underscores."""
    keys: dict[str, set[str]] = defaultdict(set)
    for section, text in _settings():
        key = re.match(r'^"?([\w.-]+)"?\s*=', text)
        if key is not None:
            name = key.group(1)
            keys[section].add(name.replace(".", "_") if section == "server" else name)
    return keys


def _accepted() -> dict[str, set[str]]:
    oauth = {OAUTH_PREFIX + f.name for f in fields(OAuthBearerConfig)}
    return {
        "server": set(config._SERVER_KEYS) | oauth,
        "engine": set(config._ENGINE_KEYS),
        "store": set(config._STORE_KEYS),
        "http": set(HTTP_KEYS),
        "schema_registry": set(REGISTRY_KEYS),
        "mirror": set(MIRROR_KEYS),
        "tables": {f.name for f in fields(TablesConfig)} - {"properties"},
        "tables.properties": set(),
        "topic_defaults": set(),
    }


def test_the_doc_names_every_key_each_section_takes_and_no_other() -> None:
    documented = _documented()
    per_listener = {k for k in documented["server"] if config._PER_LISTENER_MECHANISMS.fullmatch(k)}
    assert per_listener, "listener.name.<name>.sasl.enabled.mechanisms is not shown"
    documented["server"] -= per_listener
    documented["topic_defaults"] = set()  # topic configs: docs/engine.md lists them
    documented["tables.properties"] = set()  # passed to pyiceberg as given
    accepted = _accepted()
    assert set(documented) == set(accepted)
    for section, keys in accepted.items():
        assert documented[section] == keys, (
            f"[{section}]: not in the doc {sorted(keys - documented[section])},"
            f" not taken by the parser {sorted(documented[section] - keys)}"
        )


def test_the_doc_shows_each_setting_at_its_default(tmp_path: Path) -> None:
    path = tmp_path / "tidelog.toml"
    path.write_text(_block())
    loaded = load_config_file(path)
    # advertised is an example; the listen addresses are the defaults' own.
    assert loaded.server == replace(ServerConfig(), advertised_host="myhost", advertised_port=9092)
    assert loaded.store == StreamStoreConfig()
    assert loaded.engine.pop("groups") == GroupConfig()
    assert loaded.engine.pop("transactions") == TransactionConfig()
    assert loaded.engine.pop("tables") == TablesConfig()
    defaults = EngineConfig()
    assert loaded.engine == {name: getattr(defaults, name) for name in loaded.engine}
    # tidelog serve creates topics on first use unless told not to, as Kafka does
    assert (loaded.auto_create_topics, loaded.default_partitions) == (True, 1)
    assert replace(loaded.http, listen=None) == HttpConfig()
    assert replace(loaded.schema_registry, listen=None) == RegistryConfig()


@pytest.mark.parametrize(
    ("table", "refusal"),
    [
        ('[store]\nupload_bytes = "32MiB"\n', "[store]: upload_bytes must be an integer"),
        ("[store]\nupload_bytes = 1.5\n", "[store]: upload_bytes must be an integer"),
        ('[store]\nupload_interval_s = "2"\n', "[store]: upload_interval_s must be a number"),
        ('[store]\ndurability = "always"\n', "[store]: durability must be one of fsync"),
        ("[store]\naccept_data_loss = 1\n", "[store]: accept_data_loss must be true or false"),
        ('[server]\nnode_id = "1"\n', "[server]: node_id must be an integer"),
        ('[server]\nmax_request_bytes = "100MB"\n', "[server]: max_request_bytes must be an int"),
        ("[server]\nlog_format = 1\n", "[server]: log_format must be one of text, json, not 1"),
        (
            '[server]\n"sasl.password.check.queue.per.address" = "4"\n',
            "[server]: sasl.password.check.queue.per.address must be a 64-bit integer, from 1",
        ),
        (
            '[server]\n"sasl.password.check.queue.per.address" = 0\n',
            "[server]: sasl.password.check.queue.per.address must be a 64-bit integer, from 1",
        ),
        ('[http]\nprobe_timeout_s = "2"\n', "[http]: probe_timeout_s must be a number"),
        (
            '[http]\nmax_connections_per_address = "4"\n',
            "[http]: max_connections_per_address must be a 64-bit integer, from 1 to 100000",
        ),
        (
            "[schema_registry]\nmax_connections_per_address = 0\n",
            "[schema_registry]: max_connections_per_address must be a 64-bit integer,"
            " from 1 to 100000",
        ),
        ("[engine]\ngroup_max_size = 1.5\n", "[engine]: group_max_size must be an integer"),
        # Kept apart from the other [engine] settings, typed the same: a
        # string "no" is truthy, and would have turned auto-creation on.
        (
            '[engine]\nauto_create_topics = "no"\n',
            "[engine]: auto_create_topics must be true or false, not 'no'",
        ),
        ("[engine]\ndefault_partitions = 0\n", "[engine]: default_partitions must be"),
        (
            '[engine]\ngroup_consumer_migration_policy = "sideways"\n',
            "group_consumer_migration_policy must be one of bidirectional, upgrade, downgrade, "
            "disabled, not 'sideways'",
        ),
        (
            '[topic_defaults]\n"retention.ms" = "7d"\n',
            "[topic_defaults]: invalid value '7d' for config retention.ms: not a valid long",
        ),
        ('[topic_defaults]\n"retention" = "1"\n', "config retention: unknown topic config"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_when_the_file_is_read(
    tmp_path: Path, table: str, refusal: str
) -> None:
    path = tmp_path / "tidelog.toml"
    path.write_text(table)
    with pytest.raises(ConfigFileError, match=re.escape(refusal)):
        load_config_file(path)


@pytest.mark.parametrize(
    "key", ["host", "port", "advertised_host", "oauthbearer", "listener_sasl_enabled_mechanisms"]
)
def test_the_fields_a_file_sets_by_other_names_are_unknown_keys(tmp_path: Path, key: str) -> None:
    path = tmp_path / "tidelog.toml"
    path.write_text(f"[server]\n{key} = 1\n")
    with pytest.raises(ConfigFileError, match=rf"unknown keys in \[server\]: \['{key}'\]"):
        load_config_file(path)


def test_the_broker_config_table_is_the_broker_configs() -> None:
    header = ("broker config", "type", "default", "dynamic", "what it governs")
    rows = docspec.table("server.md", *header)
    documented = {row["broker config"].strip("`"): row for row in rows}
    assert set(documented) == set(BROKER_CONFIG_DEFS)
    for name, definition in BROKER_CONFIG_DEFS.items():
        row = documented[name]
        dynamic = "yes" if definition.dynamic else "no"
        assert (row["type"], row["default"], row["dynamic"]) == (
            definition.type.value,
            definition.default,
            dynamic,
        ), name
        if definition.topic is not None:
            assert f"`{definition.topic}`" in row["what it governs"], name


def test_docs_engine_md_names_every_topic_config() -> None:
    section = (DOC.parent / "engine.md").read_text().split("## Topic configs", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert [name for name in CONFIG_DEFS if f"`{name}`" not in section] == []


def _load(tmp_path: Path, section: str, key: str, value: float) -> None:
    """Reads a file setting one key, as ``tidelog serve`` reads it ([mirror]
    is checked as serve checks it, with the target it needs)."""
    quoted = f'"{key}"' if "." in key else key
    path = tmp_path / "ranges.toml"
    target = 'to = "kafka-1:9092"\n' if section == "mirror" else ""
    # a key ordered against others is tried beside them at their loosest
    target += "".join(f"{k} = {v}\n" for k, v in companions(key).items())
    path.write_text(f"[{section}]\n{target}{quoted} = {value!r}\n")
    loaded = load_config_file(path)
    if section == "mirror":
        assert loaded.mirror is not None
        settings_from_table(dict(loaded.mirror), "127.0.0.1:9092")


def _ranges() -> list[tuple[str, str, str]]:
    rows = docspec.table("server.md", "section", "keys", "accepted")
    return [
        (section, key, row["accepted"])
        for row in rows
        for section in re.findall(r"`\[(\w+)\]`", row["section"])
        for key in re.findall(r"`([\w.]+)`", row["keys"])
    ]


@pytest.mark.parametrize(("section", "key", "accepted"), _ranges())
def test_each_documented_range_is_the_parsers(
    tmp_path: Path, section: str, key: str, accepted: str
) -> None:
    """The least and most a key takes are accepted, a step past either is
    refused when the file is read (an integer key steps by 1, a number by
    0.01), as docs/server.md's table of ranges says."""
    default = _documented_default(section, key)
    step: float = 1 if isinstance(default, int) else 0.01
    kind = type(default)
    bounds = re.fullmatch(
        r"(?:(?P<off>0) \(off\), or )?(?:from (?P<low>[\d.]+) to (?P<high>[\d.]+)"
        r"|(?P<least>[\d.]+) or more(?P<finite>, finite)?"
        r"|above (?P<above>[\d.]+)(?:, at most (?P<most>[\d.]+)|(?P<finite_above>, finite))?)",
        accepted,
    )
    assert bounds is not None, accepted
    accept: list[float] = []
    refuse: list[float] = []
    low, high = bounds["low"] or bounds["least"], bounds["high"] or bounds["most"]
    if low is not None:
        accept.append(kind(low))
        refuse.append(kind(low) - step)
    if high is not None:
        accept.append(kind(high))
        refuse.append(kind(high) + step)
    if bounds["above"] is not None:
        accept.append(kind(bounds["above"]) + step)
        refuse.append(kind(bounds["above"]))
    if bounds["finite"] or bounds["finite_above"]:
        refuse += [float("inf"), float("nan")]  # a NaN passes every comparison
    if bounds["off"]:
        accept.append(kind(0))
        refuse.remove(kind(low) - step)
        refuse.append(kind(low) / 2)
    for value in accept:
        _load(tmp_path, section, key, value)
    named = "[._]".join(map(re.escape, re.split(r"[._]", key)))  # either spelling
    for value in refuse:
        with pytest.raises((ConfigFileError, MirrorSettingsError), match=named):
            _load(tmp_path, section, key, value)


def _documented_default(section: str, key: str) -> int | float:
    """The key's value in the doc's config file (commented or not): its type
    tells an integer key from a number."""
    for current, text in _settings():
        found = re.match(rf'^"?{re.escape(key)}"?\s*=\s*([-\d.]+)', text)
        if current == section and found is not None:
            number = found.group(1)
            return float(number) if "." in number else int(number)
    raise AssertionError(f"[{section}] {key} is not in the config file")
