"""Schemas on the broker: the registry that keeps them (Confluent's Schema
Registry API) and the checks that hold a topic's records to them."""
