"""A second process for budget tests: list a tenant's tasks through the stream, then report stats."""

from __future__ import annotations

import json
import sys

from tests.support.resources import make_api


def main() -> None:
    base_url, tenants_file, state, tenant, passes = sys.argv[1:]
    api = make_api(base_url=base_url, tenants_file=tenants_file, state=state)
    client = api.client(tenant)
    records = 0
    for _ in range(int(passes)):
        records += sum(len(page.records) for page in client.list_pages("tasks", None))
    print(json.dumps({"records": records, **client.stats}))


if __name__ == "__main__":
    main()
