"""Subscriptions to other apps' domain signals (connected in AnalyticsConfig.ready)."""
