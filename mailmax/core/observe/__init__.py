"""What a running server tells about itself: events (logs, live trace), activity counters and
Prometheus metrics."""
