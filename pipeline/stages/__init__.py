"""Pipeline stages: one job each, each with its own counters and reject reasons."""
