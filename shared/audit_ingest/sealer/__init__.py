"""The sealer: a consumer of the events topic that publishes signed checkpoints
(docs/integrity.md). `runner.Sealer` is the loop; `metrics` its Prometheus families."""
