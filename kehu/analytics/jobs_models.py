"""Huey jobs of the analytics models area: thin wrappers over services."""
