"""Huey tasks for dedup: thin wrappers over kehu.dataops.services."""
