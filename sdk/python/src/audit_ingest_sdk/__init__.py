"""Python SDK for the audit-event ingestion API."""
