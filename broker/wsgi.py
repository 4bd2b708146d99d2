"""WSGI entry point of the api role (served by gunicorn)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "broker.settings.local")
application = get_wsgi_application()
