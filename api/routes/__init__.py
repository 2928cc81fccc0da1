"""Thin routers: parse, call one service method, map to a *Public model."""
