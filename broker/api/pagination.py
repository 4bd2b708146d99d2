from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination


class NewestFirstPagination(CursorPagination):
    """Opaque cursors (stable under inserts, unlike page numbers) over the newest
    rows first; ``limit`` picks the page size."""

    ordering = "-created_at"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        # The field the cursor's position is compared with, to vet the position.
        self._position_field = queryset.model._meta.get_field(self.ordering.lstrip("-"))
        return super().paginate_queryset(queryset, request, view)

    def decode_cursor(self, request):
        # A cursor the client mangled is bad input (400), not a missing page, and
        # neither is a well-formed cursor whose position is not a value of the
        # ordering field (it would reach the database filter otherwise).
        try:
            cursor = super().decode_cursor(request)
        except NotFound as exc:
            raise ValidationError({"cursor": [str(exc.detail)]}) from exc
        if cursor is not None and cursor.position is not None:
            try:
                self._position_field.to_python(cursor.position)
            except (DjangoValidationError, ValueError, TypeError) as exc:
                raise ValidationError({"cursor": ["Invalid cursor"]}) from exc
        return cursor


class LedgerPagination(NewestFirstPagination):
    ordering = "-id"
