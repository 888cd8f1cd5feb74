"""Huey jobs of the analytics dashboards area: thin wrappers over services."""
