"""The commands of `coupon-ledger` (api/cli.py parses the command line and runs them), a module
per command or group of commands."""
