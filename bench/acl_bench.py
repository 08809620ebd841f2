"""How fast the ACL authorizer decides: authorize() calls per second with
many ACLs, beside the authorizer of a server without ACLs and a plain scan
of every ACL, measured in the same run.

    python bench/acl_bench.py [--acls 10000] [--calls 200000] [--quick] [--json]

The ACLs: per topic ``t-<n>`` an ALLOW of READ for ``User:u-<n % 100>``
(literal), every tenth a DENY of WRITE for ``User:*``, and per hundred a
PREFIXED ALLOW of ALL on ``t-<n // 100>`` (so a decision meets literal,
wildcard and several prefix lengths). The calls cycle through the topics and
the operations READ, WRITE and DESCRIBE, half by the topic's reader and
half by another principal: allowed and refused alike, as requests are.

- ``allow_all_per_s``: AllowAll (the server without authorizer), the floor;
- ``acl_per_s``: the ACL authorizer over ``--acls`` ACLs;
- ``scan_per_s``: the same decisions by looking at every ACL (the model of
  tests/server/test_acl_authorizer.py), with ``--calls`` / 100 calls;
- ``acl_vs_scan``: how many times faster the index is than the scan;
  ``allow_all_vs_acl``: what authorizing costs beside not doing it.
"""

from __future__ import annotations

import time
from typing import Any

import _harness

from engine.acl_bindings import AclBinding, AclPermission, PatternType
from engine.catalog import CatalogState
from engine.server.acl_authorizer import AclAuthorizer
from engine.server.authorizer import AclOperation, AllowAll, Authorizer, ResourceType

TOPIC = ResourceType.TOPIC
OPS = (AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE)


def acls(count: int) -> list[AclBinding]:
    made: list[AclBinding] = []
    n = 0
    while len(made) < count:
        made.append(
            AclBinding(TOPIC, f"t-{n}", PatternType.LITERAL, f"User:u-{n % 100}", "*",
                       AclOperation.READ, AclPermission.ALLOW)
        )  # fmt: skip
        if n % 10 == 0:
            made.append(
                AclBinding(TOPIC, f"t-{n}", PatternType.LITERAL, "User:*", "*",
                           AclOperation.WRITE, AclPermission.DENY)
            )  # fmt: skip
        if n % 100 == 0:
            made.append(
                AclBinding(TOPIC, f"t-{n // 100}", PatternType.PREFIXED, f"User:u-{n % 7}", "*",
                           AclOperation.ALL, AclPermission.ALLOW)
            )  # fmt: skip
        n += 1
    return made[:count]


class Scan:
    """Every ACL looked at for every decision: what the index saves."""

    def __init__(self, bindings: list[AclBinding]) -> None:
        self.bindings = bindings
        self.inner = AclAuthorizer(CatalogState())

    def authorize(
        self, principal: str, operation: AclOperation, resource_type: ResourceType, name: str,
        host: str = "*",
    ) -> bool:  # fmt: skip
        applying = [
            a for a in self.bindings
            if a.resource_type == resource_type
            and (name.startswith(a.name) if a.pattern_type == PatternType.PREFIXED
                 else a.name in (name, "*"))
        ]  # fmt: skip
        if not applying:
            return False
        state = CatalogState()
        state.acls = dict.fromkeys(applying)
        state.acls_version = 1
        self.inner._catalog = state
        return self.inner.authorize(principal, operation, resource_type, name, host)


def rate(authorizer: Authorizer, calls: int, topics: int) -> tuple[float, int]:
    """Calls per second, and how many were allowed."""
    requests = []
    for i in range(min(calls, 100_000)):
        topic = (i * 7919) % topics
        # half the calls by the topic's own reader, half by someone else
        principal = f"User:u-{topic % 100 if i % 2 else i % 100}"
        requests.append((principal, OPS[i % 3], f"t-{topic}"))
    allowed = 0
    start = time.perf_counter()
    done = 0
    while done < calls:
        for principal, operation, name in requests[: calls - done]:
            allowed += authorizer.authorize(principal, operation, TOPIC, name, "10.0.0.1")
        done += min(len(requests), calls - done)
    return calls / (time.perf_counter() - start), allowed


def main() -> None:
    parser = _harness.parser(__doc__, "1,000 ACLs and 20,000 calls")
    parser.add_argument("--acls", type=int, default=10_000)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    count, calls = (1_000, 20_000) if args.quick else (args.acls, args.calls)
    bindings = acls(count)
    state = CatalogState()
    state.apply(["acls_add", [a.to_wire() for a in bindings]])
    topics = sum(1 for a in bindings if a.pattern_type == PatternType.LITERAL) or 1
    allow_all, _ = rate(AllowAll(), calls, topics)
    acl, allowed = rate(AclAuthorizer(state), calls, topics)
    scan, _ = rate(Scan(bindings), max(calls // 100, 100), topics)
    results: dict[str, Any] = {
        "acls": len(bindings),
        "calls": calls,
        "allowed_share": round(allowed / calls, 3),
        "allow_all_per_s": round(allow_all),
        "acl_per_s": round(acl),
        "scan_per_s": round(scan),
        "acl_vs_scan": round(acl / scan, 1),
        "allow_all_vs_acl": round(allow_all / acl, 1),
    }
    _harness.report(results, args.json, _table)


def _table(results: dict[str, Any]) -> None:
    print(f"authorize() with {results['acls']} ACLs, {results['calls']} calls")
    print(f"  AllowAll           {results['allow_all_per_s']:>12,} calls/s")
    print(f"  ACL authorizer     {results['acl_per_s']:>12,} calls/s")
    print(f"  scan of every ACL  {results['scan_per_s']:>12,} calls/s")
    print(f"  index vs scan: {results['acl_vs_scan']}x; AllowAll vs ACL: "
          f"{results['allow_all_vs_acl']}x; allowed: {results['allowed_share']:.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
