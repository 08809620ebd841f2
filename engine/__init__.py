"""tidelog's engine: Kafka semantics, the embedded API, the wire server and the CLI."""

__version__ = "0.1.0"
