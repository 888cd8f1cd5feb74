"""Data operations pages: imports, exports, duplicates and merges, data quality."""
