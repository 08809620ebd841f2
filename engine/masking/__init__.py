"""Masked replay: per-topic rules that hide fields of JSON records from the
principals that may not see them in clear, applied between the stored
batches and a fetch (docs/governance.md, "Masked replay").

``rules`` parses and checks the topic config; ``documents`` masks one JSON
document and one record; ``batches`` re-encodes a fetch's batches with
their records masked; ``policy`` gives a topic's masking from its config
and key; ``unmask`` says who is let see clear values.
"""
