"""Alerts: depth references, zones, fall detection and depth health, per camera; commands that steer them."""
