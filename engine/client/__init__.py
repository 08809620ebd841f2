"""The embedded clients: producers, consumers, group members and their helpers.

They reach the engine only through ``engine.client.host`` (what a client
needs from the broker core), never through ``Engine`` itself.
"""
