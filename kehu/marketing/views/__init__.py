"""Segment pages (segments.py) and the rule builder's form handling (builder.py)."""
