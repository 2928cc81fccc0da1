"""HTTP API (FastAPI) and the `coupon-ledger` command line."""
