from rest_framework.authentication import TokenAuthentication


class BearerTokenAuthentication(TokenAuthentication):
    """``Authorization: Bearer <token>``; the token belongs to a customer's user."""

    keyword = "Bearer"
