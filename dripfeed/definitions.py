"""The code location: assembles assets, resources, schedules and sensors; defines nothing itself."""

import dagster as dg

from resources.tasklane_api import TasklaneAPI
from resources.warehouse import Warehouse

defs = dg.Definitions(
    resources={"tasklane": TasklaneAPI(), "warehouse": Warehouse()},
)
