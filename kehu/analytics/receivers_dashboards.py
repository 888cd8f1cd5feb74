"""Dashboard subscriptions to other apps' domain signals (connected in AnalyticsConfig.ready)."""
