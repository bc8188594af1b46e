"""The assets: per-tenant partitioned `users`, `projects` and `tasks` (a sync each, or a history
export's load), `api_usage`, the checks their steps evaluate and the freshness checks, the
`sync_tenant` job, and what a run does about its own process (deferral, run worker, priority)."""
