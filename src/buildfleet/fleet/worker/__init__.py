"""``buildfleet --worker``: what runs on a build machine (stdlib only, beside the builder)."""
