"""The versions of an API a server answered, read from its request
metrics (``/metrics``): what a real client negotiated, seen from the
server."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def versions_answered(http: str, api: str) -> set[int]:
    """The versions of ``api`` (Kafka's name: ``Fetch``) that the server
    at ``http`` (``http://host:port`` of its --http listener) answered."""
    with urllib.request.urlopen(f"{http}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        int(sample.labels["version"])
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "tidelog_requests_total"
        and sample.labels["api"] == api
        and sample.value > 0
    }
