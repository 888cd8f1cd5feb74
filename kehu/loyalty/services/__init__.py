"""Every write to cards, ledgers, tiers and coupons."""
