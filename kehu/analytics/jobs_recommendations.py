"""Huey jobs of the analytics recommendations area: thin wrappers over services."""
