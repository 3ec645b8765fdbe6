"""Routing: which candidate serves a request, from live health."""
