"""Domain errors. Each carries a stable machine-readable ``code`` and the HTTP status
the API answers with; one DRF exception handler renders them as problem details."""


class BrokerError(Exception):
    status = 400
    code = "broker_error"
    title = "Request refused"

    def __init__(self, detail: str = "", **extra: object) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class InvalidOrder(BrokerError):
    """The order's fields do not make an order (a limit price on a market order,
    ...). ``errors`` maps each field to what is wrong with it."""

    status = 400
    code = "invalid_request"
    title = "Invalid request"

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("one or more fields are invalid", errors=errors)
        self.errors = errors


class InsufficientBuyingPower(BrokerError):
    status = 422
    code = "insufficient_buying_power"
    title = "Insufficient buying power"


class InsufficientShares(BrokerError):
    status = 422
    code = "insufficient_shares"
    title = "Insufficient shares (short selling is not allowed)"


class UnknownSymbol(BrokerError):
    status = 422
    code = "unknown_symbol"
    title = "Unknown symbol"


class PriceOutOfRange(BrokerError):
    """The exchange's last price is above what the broker trades (money.MAX_PRICE):
    a hold against it might not fit its columns."""

    status = 422
    code = "price_out_of_range"
    title = "Price out of range"


class AdjustmentAlreadyDecided(BrokerError):
    """A balance adjustment request was approved or rejected already."""

    status = 409
    code = "adjustment_already_decided"
    title = "Adjustment already decided"


class FourEyesRequired(BrokerError):
    """The staff member who asked for an adjustment cannot decide it."""

    status = 403
    code = "four_eyes_required"
    title = "Another staff member must decide"


class ExchangeUnavailable(BrokerError):
    status = 503
    code = "exchange_unavailable"
    title = "The exchange is unavailable"


class TradeNotFound(BrokerError):
    status = 404
    code = "not_found"
    title = "Not found"


class TradeNotCancelable(BrokerError):
    status = 422
    code = "trade_not_cancelable"
    title = "The trade can no longer be canceled"


class DuplicateClientOrderId(BrokerError):
    status = 409
    code = "duplicate_client_order_id"
    title = "client_order_id already used"


class SandboxFundingDisabled(BrokerError):
    status = 403
    code = "sandbox_funding_disabled"
    title = "Sandbox funding is disabled"


class SymbolNotFound(BrokerError):
    status = 404
    code = "unknown_symbol"
    title = "Unknown symbol"
