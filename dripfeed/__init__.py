"""dripfeed: a Dagster code location that syncs Tasklane workspaces into a warehouse."""
