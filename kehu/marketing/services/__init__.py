"""Segment writes and the rule language (see rules.py)."""
