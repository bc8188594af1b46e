"""A separate process that materializes one tenant's three assets (kill and parallel tests)."""

from __future__ import annotations

import sys

import dagster as dg

from resources.tasklane import TasklaneAPI
from resources.warehouse import Warehouse
from tests.support.runs import materialize_tenant


def main() -> None:
    base_url, tenants_file, state, warehouse_url, tenant, pages_per_checkpoint = sys.argv[1:]
    tasklane = TasklaneAPI(base_url=base_url, tenants_file=tenants_file, state=state)
    config = {
        "ops": {
            name: {"config": {"pages_per_checkpoint": int(pages_per_checkpoint)}}
            for name in ("users", "projects", "tasks")
        }
    }
    with dg.instance_for_test() as instance:
        result = materialize_tenant(instance, tenant, tasklane, Warehouse(url=warehouse_url), run_config=config)
    sys.exit(0 if result.success else 1)


if __name__ == "__main__":
    main()
