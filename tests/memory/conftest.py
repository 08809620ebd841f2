"""The engine fixtures (tests/engine/conftest.py) for the memory tests."""

from tests.engine.conftest import engine_factory, s3_endpoint, s3_url  # noqa: F401
