"""The kafka backend: ``pylog.open("kafka://host:port,...")`` over a real Apache Kafka cluster.

The same client API as the embedded backend, implemented over confluent-kafka (librdkafka):

- ``backend.py``: ``KafkaBackend``, the ``pylog.backend.Backend`` surface (metadata, topic and
  group admin through ``confluent_kafka.admin.AdminClient``);
- ``settings.py``: the one owner of how pylog's and kafka-python's config names become
  librdkafka properties, and which are refused;
- ``errors.py``: the one owner of how Kafka's error codes become ``pylog.errors`` classes;
- ``producer_core.py``: the core behind ``pylog.Producer`` (``confluent_kafka.Producer``);
- ``consumer.py``: ``KafkaConsumer``, the ``pylog.Consumer`` API over ``confluent_kafka.Consumer``.

docs/kafka.md lists what differs from the embedded backend.
"""
