"""The HTTP edge: provider webhooks, health and metrics, and the admin API."""
