"""Each real client of the suite behind one interface, for the security
matrix: given an :class:`Access` it round-trips a few records through a
consumer group, and it reports a refusal as the client itself surfaces it
(librdkafka's error name, the Python clients' exception class, kafkajs'
error name and type, kcat's line on stderr), so that the matrix can assert
what each client's users would see."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import subprocess
import time
from collections.abc import Iterator
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, Producer

from tests.server.conftest import quiet_librdkafka
from tests.server.security_matrix import TIMEOUT, Access
from tests.server.test_kafkajs import KafkaJSError, kafkajs

VALUES = [b"m0", b"m1", b"m2"]
"""What each round trip produces and expects back, in order."""
REFUSAL_TIMEOUT = 10.0
"""How long a client is given to report a refusal."""


class MatrixClient(Protocol):
    name: str

    def round_trip(self, access: Access, topic: str, group: str) -> list[bytes]:
        """Produces VALUES to ``topic`` and reads them back in ``group``."""
        ...

    def refused_produce(self, access: Access, topic: str) -> str: ...

    def refused_consume(self, access: Access, topic: str, group: str) -> str: ...

    def refused_group(self, access: Access, topic: str, group: str) -> str: ...

    def refused_login(self, access: Access) -> str:
        """What the client says when its SASL password is wrong."""
        ...


# -- confluent-kafka (librdkafka) ------------------------------------------------------


def librdkafka_settings(access: Access) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "bootstrap.servers": access.bootstrap,
        "security.protocol": access.protocol,
        "ssl.ca.location": str(access.ca),
        **quiet_librdkafka(),
    }
    if access.mechanism is not None:
        settings |= {
            "sasl.mechanism": access.mechanism,
            "sasl.username": access.user,
            "sasl.password": access.password,
        }
    if access.client is not None:
        settings |= {
            "ssl.certificate.location": str(access.client.certificate),
            "ssl.key.location": str(access.client.key),
        }
    return settings


class Confluent:
    name = "confluent-kafka"

    def _produce(self, access: Access, topic: str, values: list[bytes]) -> list[KafkaError | None]:
        reports: list[KafkaError | None] = []
        producer = Producer(
            {**librdkafka_settings(access), "acks": "all", "message.timeout.ms": 10_000}
        )
        for value in values:
            producer.produce(topic, value, on_delivery=lambda e, _m: reports.append(e))
        producer.flush(TIMEOUT)
        return reports

    def _consume(self, access: Access, topic: str, group: str, count: int) -> list[Any]:
        """Up to ``count`` values, or the first error the consumer hands back."""
        consumer = Consumer(
            {**librdkafka_settings(access), "group.id": group, "auto.offset.reset": "earliest"}
        )
        consumer.subscribe([topic])
        found: list[Any] = []
        deadline = time.monotonic() + TIMEOUT
        try:
            while len(found) < count and time.monotonic() < deadline:
                message = consumer.poll(0.5)
                if message is None:
                    continue
                if message.error() is not None:
                    return [message.error()]
                found.append(message.value())
        finally:
            consumer.close()
        return found

    def round_trip(self, access: Access, topic: str, group: str) -> list[bytes]:
        assert self._produce(access, topic, VALUES) == [None] * len(VALUES)
        return self._consume(access, topic, group, len(VALUES))

    def refused_produce(self, access: Access, topic: str) -> str:
        [error] = self._produce(access, topic, [b"refused"])
        assert error is not None
        return str(error.name())

    def refused_consume(self, access: Access, topic: str, group: str) -> str:
        [error] = self._consume(access, topic, group, 1)
        assert isinstance(error, KafkaError), error
        return str(error.name())

    def refused_group(self, access: Access, topic: str, group: str) -> str:
        return self.refused_consume(access, topic, group)

    def refused_login(self, access: Access) -> str:
        errors: list[KafkaError] = []
        producer = Producer({**librdkafka_settings(access), "error_cb": errors.append})
        deadline = time.monotonic() + REFUSAL_TIMEOUT
        while not errors and time.monotonic() < deadline:
            producer.poll(0.1)
        assert errors, "no error within the timeout"
        return str(errors[0].name())


# -- kafka-python and aiokafka ---------------------------------------------------------


@contextlib.contextmanager
def logged_exceptions(logger: str) -> Iterator[list[BaseException]]:
    """The exceptions ``logger`` is handed as arguments of its records: where
    a Python client that retries reports what ended an attempt."""
    found: list[BaseException] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            args = record.args if isinstance(record.args, tuple) else ()
            found.extend(a for a in args if isinstance(a, BaseException))

    handler = Collect(logging.WARNING)
    log = logging.getLogger(logger)
    log.addHandler(handler)
    try:
        yield found
    finally:
        log.removeHandler(handler)


def python_settings(access: Access, ssl_context: bool) -> dict[str, Any]:
    """kafka-python's and aiokafka's settings; aiokafka takes an SSLContext
    where kafka-python takes the files."""
    settings: dict[str, Any] = {
        "bootstrap_servers": access.bootstrap,
        "security_protocol": access.protocol,
    }
    certificate = access.client
    if ssl_context:
        from aiokafka.helpers import create_ssl_context

        settings["ssl_context"] = create_ssl_context(
            cafile=str(access.ca),
            certfile=None if certificate is None else str(certificate.certificate),
            keyfile=None if certificate is None else str(certificate.key),
        )
    else:
        settings["ssl_cafile"] = str(access.ca)
        if certificate is not None:
            settings["ssl_certfile"] = str(certificate.certificate)
            settings["ssl_keyfile"] = str(certificate.key)
    if access.mechanism is not None:
        settings |= {
            "sasl_mechanism": access.mechanism,
            "sasl_plain_username": access.user,
            "sasl_plain_password": access.password,
        }
    return settings


def kafka_python_round_trip(
    settings: dict[str, Any], topic: str, group: str, values: list[bytes] = VALUES
) -> list[bytes]:
    """Produces ``values`` with kafka-python (acks=all) and reads them back
    through consumer group ``group``: what was read, in order."""
    from kafka import KafkaConsumer, KafkaProducer

    producer = KafkaProducer(acks="all", **settings)
    try:
        for value in values:
            producer.send(topic, value).get(TIMEOUT)
    finally:
        producer.close()
    consumer = KafkaConsumer(topic, group_id=group, auto_offset_reset="earliest", **settings)
    read: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while len(read) < len(values) and time.monotonic() < deadline:
            # All the time left: a poll that times out mid-rebalance can leave
            # kafka-python unassigned for good (test_groups_through_an_outage).
            batches = consumer.poll(timeout_ms=max(1, int((deadline - time.monotonic()) * 1000)))
            read += [m.value for messages in batches.values() for m in messages]
    finally:
        consumer.close()
    return read


def aiokafka_round_trip(
    settings: dict[str, Any], topic: str, group: str, values: list[bytes] = VALUES
) -> list[bytes]:
    """The same with aiokafka."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def run() -> list[bytes]:
        producer = AIOKafkaProducer(acks="all", **settings)
        await producer.start()
        try:
            for value in values:
                await producer.send_and_wait(topic, value)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(topic, group_id=group, auto_offset_reset="earliest", **settings)
        await consumer.start()
        try:
            read: list[bytes] = []
            while len(read) < len(values):
                message = await asyncio.wait_for(consumer.getone(), TIMEOUT)
                assert message.value is not None
                read.append(message.value)
            return read
        finally:
            await consumer.stop()

    return asyncio.run(run())


class KafkaPython:
    name = "kafka-python"

    def _settings(self, access: Access) -> dict[str, Any]:
        return python_settings(access, ssl_context=False)

    def round_trip(self, access: Access, topic: str, group: str) -> list[bytes]:
        return kafka_python_round_trip(self._settings(access), topic, group)

    def refused_produce(self, access: Access, topic: str) -> str:
        from kafka import KafkaProducer

        producer = KafkaProducer(max_block_ms=10_000, **self._settings(access))
        try:
            producer.send(topic, b"refused").get(REFUSAL_TIMEOUT)
        except Exception as error:
            return type(error).__name__
        finally:
            producer.close()
        raise AssertionError("the record was acknowledged")

    def refused_consume(self, access: Access, topic: str, group: str) -> str:
        """kafka-python 3.0's subscribed consumer only logs a topic it may not
        describe (its metadata listener's exception ends in the refresh
        loop); looking up where to start reading raises it."""
        from kafka import KafkaConsumer, TopicPartition
        from kafka.errors import KafkaError as PythonKafkaError

        consumer = KafkaConsumer(group_id=group, **self._settings(access))
        try:
            consumer.beginning_offsets([TopicPartition(topic, 0)])
        except PythonKafkaError as error:
            return type(error).__name__
        finally:
            consumer.close()
        raise AssertionError("the offsets were found")

    def refused_group(self, access: Access, topic: str, group: str) -> str:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError as PythonKafkaError

        consumer = KafkaConsumer(
            topic, group_id=group, auto_offset_reset="earliest", **self._settings(access)
        )
        deadline = time.monotonic() + REFUSAL_TIMEOUT
        try:
            while time.monotonic() < deadline:
                consumer.poll(timeout_ms=200)
        except PythonKafkaError as error:
            return type(error).__name__
        finally:
            consumer.close()
        raise AssertionError("the consumer joined its group")

    def refused_login(self, access: Access) -> str:
        """kafka-python retries a bootstrap that failed to authenticate until
        its timeout, logging what failed each attempt."""
        from kafka.admin import KafkaAdminClient
        from kafka.errors import KafkaTimeoutError

        with (
            logged_exceptions("kafka.net.manager") as failures,
            contextlib.suppress(KafkaTimeoutError),
        ):
            KafkaAdminClient(bootstrap_timeout_ms=2_000, **self._settings(access)).close()
        assert failures, "no attempt failed"
        return type(failures[0]).__name__


class AioKafka:
    name = "aiokafka"

    def round_trip(self, access: Access, topic: str, group: str) -> list[bytes]:
        return aiokafka_round_trip(python_settings(access, True), topic, group)

    def refused_produce(self, access: Access, topic: str) -> str:
        from aiokafka import AIOKafkaProducer

        async def run() -> str:
            producer = AIOKafkaProducer(request_timeout_ms=10_000, **python_settings(access, True))
            await producer.start()
            try:
                await producer.send_and_wait(topic, b"refused")
            except Exception as error:
                return type(error).__name__
            finally:
                await producer.stop()
            raise AssertionError("the record was acknowledged")

        return asyncio.run(run())

    def _refused_consumer(self, access: Access, topic: str, group: str) -> str:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError as AioKafkaError

        async def run() -> str:
            consumer = AIOKafkaConsumer(
                topic, group_id=group, auto_offset_reset="earliest", **python_settings(access, True)
            )
            try:
                await consumer.start()
                await asyncio.wait_for(consumer.getone(), REFUSAL_TIMEOUT)
            except AioKafkaError as error:
                return type(error).__name__
            finally:
                await consumer.stop()
            raise AssertionError("a record was delivered")

        return asyncio.run(run())

    def refused_consume(self, access: Access, topic: str, group: str) -> str:
        return self._refused_consumer(access, topic, group)

    def refused_group(self, access: Access, topic: str, group: str) -> str:
        return self._refused_consumer(access, topic, group)

    def refused_login(self, access: Access) -> str:
        """aiokafka tries each bootstrap server once, logging what failed,
        then raises KafkaConnectionError."""
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaConnectionError

        async def run() -> None:
            producer = AIOKafkaProducer(**python_settings(access, True))
            try:
                await producer.start()
            finally:
                await producer.stop()

        with logged_exceptions("aiokafka") as failures, contextlib.suppress(KafkaConnectionError):
            asyncio.run(run())
        assert failures, "no attempt failed"
        return type(failures[0]).__name__


# -- kafkajs ---------------------------------------------------------------------------


def kafkajs_options(access: Access) -> dict[str, Any]:
    ssl: dict[str, str] = {"ca": str(access.ca)}
    if access.client is not None:
        ssl |= {"cert": str(access.client.certificate), "key": str(access.client.key)}
    options: dict[str, Any] = {"ssl": ssl}
    if access.mechanism is not None:
        options["sasl"] = {
            "mechanism": access.mechanism.lower(),
            "username": access.user,
            "password": access.password,
        }
    return options


def kafkajs_error(error: dict[str, Any]) -> str:
    return " ".join(str(error[k]) for k in ("name", "type", "message") if k in error)


class KafkaJS:
    name = "kafkajs"

    def round_trip(self, access: Access, topic: str, group: str) -> list[bytes]:
        options = kafkajs_options(access)
        messages = [{"partition": 0, "key": None, "value": _b64(v)} for v in VALUES]
        kafkajs("produce", access.bootstrap, topic=topic, messages=messages, **options)
        read = kafkajs(
            "consume", access.bootstrap, topic=topic, groupId=group, count=len(VALUES), **options
        )
        return [_unb64(m["value"]) for m in read]

    def refused_produce(self, access: Access, topic: str) -> str:
        message = {"partition": 0, "key": None, "value": _b64(b"refused")}
        try:
            kafkajs(
                "produce", access.bootstrap, topic=topic, messages=[message],
                **kafkajs_options(access),
            )  # fmt: skip
        except KafkaJSError as refused:
            return kafkajs_error(refused.error)
        raise AssertionError("the record was acknowledged")

    def refused_consume(self, access: Access, topic: str, group: str) -> str:
        try:
            kafkajs(
                "consume", access.bootstrap, topic=topic, groupId=group, count=1,
                timeoutMs=int(REFUSAL_TIMEOUT * 1000), **kafkajs_options(access),
            )  # fmt: skip
        except KafkaJSError as refused:
            return kafkajs_error(refused.error)
        raise AssertionError("the consumer was served")

    def refused_group(self, access: Access, topic: str, group: str) -> str:
        """kafkajs tries every broker for the group's coordinator and reports
        only that none was found; the refusal each broker answered is in its
        debug log."""
        try:
            kafkajs(
                "consume", access.bootstrap, topic=topic, groupId=group, count=1,
                timeoutMs=int(REFUSAL_TIMEOUT * 1000), logLevel="DEBUG",
                **kafkajs_options(access),
            )  # fmt: skip
        except KafkaJSError as refused:
            tried = [
                _kafkajs_log(line)["error"]
                for line in refused.stderr.splitlines()
                if "Tried to find group coordinator" in line
            ]
            assert tried, refused.stderr[-2000:]
            return f"{kafkajs_error(refused.error)} / {kafkajs_error(tried[0])}"
        raise AssertionError("the consumer was served")

    def refused_login(self, access: Access) -> str:
        try:
            kafkajs(
                "produce", access.bootstrap, topic="any", messages=[], **kafkajs_options(access)
            )
        except KafkaJSError as refused:
            return str(refused.error["name"])
        raise AssertionError("the client authenticated")


def _kafkajs_log(line: str) -> dict[str, Any]:
    import json

    document: dict[str, Any] = json.loads(line.split(": ", 1)[1])
    return document


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _unb64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


# -- kcat ------------------------------------------------------------------------------


def kcat_settings(access: Access) -> list[str]:
    settings = [f"security.protocol={access.protocol}", f"ssl.ca.location={access.ca}"]
    if access.mechanism is not None:
        settings += [
            f"sasl.mechanism={access.mechanism}",
            f"sasl.username={access.user}",
            f"sasl.password={access.password}",
        ]
    if access.client is not None:
        settings += [
            f"ssl.certificate.location={access.client.certificate}",
            f"ssl.key.location={access.client.key}",
        ]
    return [arg for setting in settings for arg in ("-X", setting)]


def run_kcat(
    access: Access, *args: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["kcat", "-b", access.bootstrap, "-m", "10", *kcat_settings(access), *args],
        input=stdin, capture_output=True, timeout=TIMEOUT, check=False,
    )  # fmt: skip


def kcat_error(done: subprocess.CompletedProcess[bytes]) -> str:
    """kcat's first error on stderr (``% ERROR: ...`` or ``% Delivery failed
    ...``), past the ``%``: not its notices, nor librdkafka's log lines."""
    assert done.returncode != 0, done.stdout
    for line in done.stderr.decode(errors="replace").splitlines():
        if line.startswith(("% ERROR: ", "% Delivery failed")):
            return line.removeprefix("% ")
    raise AssertionError(done.stderr.decode(errors="replace"))


class Kcat:
    name = "kcat"

    def round_trip(self, access: Access, topic: str, group: str) -> list[bytes]:
        lines = b"".join(v + b"\n" for v in VALUES)
        produced = run_kcat(access, "-P", "-t", topic, stdin=lines)
        assert produced.returncode == 0, produced.stderr
        read = run_kcat(access, "-G", group, "-o", "beginning", "-e", "-q", topic)
        assert read.returncode == 0, read.stderr
        return read.stdout.splitlines()

    def refused_produce(self, access: Access, topic: str) -> str:
        return kcat_error(run_kcat(access, "-P", "-t", topic, stdin=b"refused\n"))

    def refused_consume(self, access: Access, topic: str, group: str) -> str:
        """The error, the topic's name written ``<topic>``."""
        done = run_kcat(access, "-G", group, "-o", "beginning", "-e", topic)
        return kcat_error(done).replace(topic, "<topic>")

    def refused_group(self, access: Access, topic: str, group: str) -> str:
        return self.refused_consume(access, topic, group)

    def refused_login(self, access: Access) -> str:
        """librdkafka's error and the server's message, without the broker's
        address and the time it took."""
        line = kcat_error(run_kcat(access, "-P", "-t", "any", stdin=b"refused\n"))
        found = re.fullmatch(
            r"ERROR: (Local: Authentication failure): \S+: SASL authentication error: (.*)"
            r" \(after .*\)",
            line,
        )
        assert found is not None, line
        return f"{found[1]}: {found[2]}"


CLIENTS: list[MatrixClient] = [Confluent(), KafkaPython(), AioKafka(), KafkaJS(), Kcat()]
