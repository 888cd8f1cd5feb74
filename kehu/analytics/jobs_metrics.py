"""Huey jobs of the analytics metrics area: thin wrappers over services."""
