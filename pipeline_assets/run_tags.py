"""The tags dripfeed puts on a tenant's runs: the sensors filter runs by them, and a run reads them."""

TENANT_TAG = "dripfeed/tenant"
TIER_TAG = "dripfeed/tier"  # hourly, daily, or ONBOARDING
ONBOARDING = "onboarding"  # the tier of a new tenant's first sync, and of a history export's load
# Dagster's own tags, which dripfeed reads or sets:
PRIORITY_TAG = "dagster/priority"  # Dagster's run queue starts the higher one first (0 when absent)
PARTITION_TAG = "dagster/partition"  # a tenant's run: its partition, the tenant's id
RUN_KEY_TAG = "dagster/run_key"  # a run requested by a schedule or sensor: its run key


def onboarding_tags(tenant: str) -> dict[str, str]:
    """A new tenant's first sync or a history load: the instance's onboarding limit applies to it
    (deploy/dagster.yaml), and a tier's run queued beside it starts first."""
    return {TENANT_TAG: tenant, TIER_TAG: ONBOARDING, PRIORITY_TAG: "-1"}
