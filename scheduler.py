"""Runs Retain's scheduler in the foreground (same as ``retain schedule run``)."""
