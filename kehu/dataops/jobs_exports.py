"""Huey tasks for exports: thin wrappers over kehu.dataops.services."""
