"""What runs the assets by itself: the schedules (`tier_schedules.py`, `api_usage_schedule.py`) and
the sensors (tenant registry, deferred syncs, export status, failure alerts, freshness, dead run
workers, run retention). Each is thin: it reads state, asks the module that decides, and requests runs."""
