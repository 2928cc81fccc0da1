"""The coupon ledger: event-sourced coupons, their rules and the application service."""
