"""REST API under /api/v1: thin views that parse, authorise, call a service, render."""
