"""The outbox relay role: publishes committed outbox rows to Kafka."""
