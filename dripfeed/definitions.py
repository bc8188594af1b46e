"""The code location: assembles assets, resources, schedules and sensors; defines nothing itself."""

import dagster as dg

defs = dg.Definitions()
