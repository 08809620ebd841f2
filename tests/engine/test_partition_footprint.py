"""An idle partition's memory: a server holds thousands of them (issue 22
reports the bytes per idle partition). Each partition's attributes share
their keys with every other partition's (CPython's key-sharing instance
dicts): past 29 attributes each instance gets a whole dict of its own,
some 1.3 KiB more per partition, which a new attribute once cost."""

from __future__ import annotations

import sys

from tests.engine.conftest import EngineFactory


def test_a_partitions_attributes_share_their_keys_with_the_other_partitions(
    engine_factory: EngineFactory,
) -> None:
    e = engine_factory()
    e.create_topic("t", 2)
    attributes = vars(e.partition("t", 0))
    # A dict sharing its class's keys holds only its values: smaller than a
    # plain dict of the same items, which holds keys and values.
    assert sys.getsizeof(attributes) < sys.getsizeof(dict(attributes)), len(attributes)


def test_an_idle_partitions_producer_table_keeps_no_dict_of_its_own(
    engine_factory: EngineFactory,
) -> None:
    """Every partition has one, with its sets of producers changed and gone
    since the last checkpoint (docs/design/0117): slots, not a dict beside
    them."""
    e = engine_factory()
    e.create_topic("t", 1)
    table = e.partition("t", 0).producers
    assert not hasattr(table, "__dict__")
    assert sys.getsizeof(table) < 100
