"""Huey tasks for merges: thin wrappers over kehu.dataops.services."""
