"""The Prometheus metrics endpoint (`python -m dripfeed.metrics`): a small long-lived process that
computes each scrape from the control store every dripfeed process shares (collector.py), so short
runs push nothing and a dead process leaves no stale series behind. docs/operations.md lists the
series, deploy/prometheus/ the alert rules, deploy/grafana/ the dashboard."""
