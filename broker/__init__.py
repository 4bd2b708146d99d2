"""Broker: the Django project and app behind the trading REST API."""
