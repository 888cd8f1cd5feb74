"""Huey tasks for imports: thin wrappers over kehu.dataops.services."""
