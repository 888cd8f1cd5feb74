"""Kehu (客户): a self-hosted customer-information system for membership-card businesses."""

__version__ = "0.1.0"
