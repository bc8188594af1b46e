"""Per-tenant partitioned `users`, `projects` and `tasks` assets (arrive with the sync issue)."""
