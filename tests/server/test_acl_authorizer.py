"""The ACL authorizer against a plain model of Kafka's rules (hypothesis):
every binding looked at in turn, no index; and the catalog's ACL records
against a round trip through their msgpack form."""

from __future__ import annotations

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.acl_bindings import AclBinding, AclFilter, AclPermission, PatternType
from engine.catalog import CatalogState
from engine.server.acl_authorizer import AclAuthorizer
from engine.server.authorizer import AclOperation, ResourceType

Op = AclOperation
NAMES = st.sampled_from(["", "a", "ab", "abc", "b", "*", "ab-1"])
PRINCIPALS = st.sampled_from(["User:alice", "User:bob", "User:*"])
HOSTS = st.sampled_from(["10.0.0.1", "10.0.0.2", "*"])
TYPES = st.sampled_from([ResourceType.TOPIC, ResourceType.GROUP])
OPERATIONS = st.sampled_from([o for o in AclOperation if o >= Op.ALL])

bindings = st.builds(
    AclBinding,
    TYPES,
    NAMES.filter(bool),
    st.sampled_from([PatternType.LITERAL, PatternType.PREFIXED]),
    PRINCIPALS,
    HOSTS,
    OPERATIONS,
    st.sampled_from([AclPermission.ALLOW, AclPermission.DENY]),
)

IMPLIES = {
    Op.DESCRIBE: {Op.READ, Op.WRITE, Op.DELETE, Op.ALTER},
    Op.DESCRIBE_CONFIGS: {Op.ALTER_CONFIGS},
}


def model(
    acls: list[AclBinding],
    principal: str,
    host: str,
    operation: AclOperation,
    resource_type: int,
    name: str,
    allow_if_none: bool,
) -> bool:
    """Kafka's rules, read off the documentation, one binding at a time."""

    def on_resource(acl: AclBinding) -> bool:
        if acl.resource_type != resource_type:
            return False
        if acl.pattern_type == PatternType.PREFIXED:
            return name.startswith(acl.name)
        return acl.name in (name, "*")

    def for_us(acl: AclBinding) -> bool:
        return acl.principal in (principal, "User:*") and acl.host in (host, "*")

    applying = [a for a in acls if on_resource(a)]
    if not applying:
        return allow_if_none
    mine = [a for a in applying if for_us(a)]
    if any(a.permission == AclPermission.DENY and a.operation in (operation, Op.ALL) for a in mine):
        return False
    return any(
        a.permission == AclPermission.ALLOW
        and (a.operation in (operation, Op.ALL) or a.operation in IMPLIES.get(operation, ()))
        for a in mine
    )


@settings(max_examples=300, deadline=None)
@given(
    st.lists(bindings, max_size=12),
    st.sampled_from(["User:alice", "User:bob"]),
    st.sampled_from(["10.0.0.1", "10.0.0.2"]),
    OPERATIONS.filter(lambda o: o != Op.ALL),
    TYPES,
    NAMES,
    st.booleans(),
)
def test_the_authorizer_decides_as_the_model(
    acls: list[AclBinding],
    principal: str,
    host: str,
    operation: AclOperation,
    resource_type: ResourceType,
    name: str,
    allow_if_none: bool,
) -> None:
    state = CatalogState()
    state.apply(["acls_add", [a.to_wire() for a in acls]])
    authorizer = AclAuthorizer(state, allow_everyone_if_no_acl_found=allow_if_none)
    decided = authorizer.authorize(principal, operation, resource_type, name, host)
    assert decided == model(acls, principal, host, operation, resource_type, name, allow_if_none)


@settings(max_examples=200, deadline=None)
@given(st.lists(bindings, max_size=12), TYPES, NAMES)
def test_matching_finds_the_bindings_whose_pattern_matches_any_principals(
    acls: list[AclBinding], resource_type: ResourceType, name: str
) -> None:
    state = CatalogState()
    state.apply(["acls_add", [a.to_wire() for a in acls]])
    expected = {
        a
        for a in acls
        if a.resource_type == resource_type
        and (
            name.startswith(a.name)
            if a.pattern_type == PatternType.PREFIXED
            else a.name in (name, "*")
        )
    }
    found = AclAuthorizer(state).matching(resource_type, name)
    assert len(found) == len(set(found)) and set(found) == expected


def test_super_users_are_allowed_whatever_the_acls_say() -> None:
    state = CatalogState()
    deny = AclBinding(ResourceType.TOPIC, "*", PatternType.LITERAL, "User:*", "*", Op.ALL, 2)
    state.apply(["acls_add", [deny.to_wire()]])
    authorizer = AclAuthorizer(state, super_users=["User:root"])
    assert authorizer.authorize("User:root", Op.WRITE, ResourceType.TOPIC, "t")
    assert not authorizer.authorize("User:alice", Op.WRITE, ResourceType.TOPIC, "t")


def test_the_index_follows_the_catalogs_changes() -> None:
    state = CatalogState()
    authorizer = AclAuthorizer(state)
    allow = AclBinding(ResourceType.TOPIC, "t", PatternType.LITERAL, "User:a", "*", Op.READ, 3)
    assert not authorizer.authorize("User:a", Op.READ, ResourceType.TOPIC, "t")
    state.apply(["acls_add", [allow.to_wire()]])
    assert authorizer.authorize("User:a", Op.READ, ResourceType.TOPIC, "t")
    state.apply(["acls_remove", [allow.to_wire()]])
    assert not authorizer.authorize("User:a", Op.READ, ResourceType.TOPIC, "t")


@given(st.lists(bindings, max_size=8))
def test_acl_records_and_snapshots_round_trip(acls: list[AclBinding]) -> None:
    state = CatalogState()
    record = msgpack.unpackb(
        msgpack.packb(["acls_add", [a.to_wire() for a in acls]], use_bin_type=True), raw=False
    )
    state.apply(record)
    assert list(state.acls) == list(dict.fromkeys(acls))
    restored = CatalogState()
    snapshot = msgpack.packb(["snapshot", state.to_wire()], use_bin_type=True)
    restored.apply(msgpack.unpackb(snapshot, raw=False, strict_map_key=False))
    assert restored.acls == state.acls


def test_the_acl_record_is_the_documented_array() -> None:
    """Golden bytes: the order of docs/engine-format.md's acl array."""
    acl = AclBinding(2, "orders", 4, "User:alice", "*", 3, 3)
    assert msgpack.packb(["acls_add", [acl.to_wire()]], use_bin_type=True) == (
        b"\x92\xa8acls_add\x91\x97\x02\xa6orders\x04\xaaUser:alice\xa1*\x03\x03"
    )


def test_a_match_filter_finds_the_bindings_that_apply_to_a_name() -> None:
    literal = AclBinding(2, "ab", 3, "User:a", "*", 3, 3)
    wildcard = AclBinding(2, "*", 3, "User:a", "*", 3, 3)
    prefixed = AclBinding(2, "a", 4, "User:a", "*", 3, 3)
    other = AclBinding(2, "b", 4, "User:a", "*", 3, 3)
    match = AclFilter(2, "ab", PatternType.MATCH, None, None, 1, 1)
    assert [a for a in (literal, wildcard, prefixed, other) if match.matches(a)] == [
        literal,
        wildcard,
        prefixed,
    ]
    exact = AclFilter(1, "ab", PatternType.ANY, None, None, 1, 1)
    assert [a for a in (literal, wildcard, prefixed, other) if exact.matches(a)] == [literal]
    assert AclFilter(0, None, 1, None, None, 1, 1).invalid() is not None
