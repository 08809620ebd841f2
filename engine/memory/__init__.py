"""Agent memory on the engine: points in time as offset vectors, bounded
replay, typed agent records, lookups and forks (docs/memory.md)."""
