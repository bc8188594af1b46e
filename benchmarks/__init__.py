"""`make bench`: speed and memory figures, measured side by side with their ceilings."""
