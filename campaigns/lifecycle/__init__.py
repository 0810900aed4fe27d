"""Lifecycle predictions for the campaign engine: fit on the store's orders, store one row per customer.

The statistics live in :mod:`recommender.clv` (no SQL there); this package turns store columns into
model inputs (``summary``), predicts (``predict``), picks each customer's best send hour (``sendhour``),
evaluates on a temporal holdout (``evaluate``) and learns repurchase intervals (``replenish``).
docs/predictions.md explains each prediction and its measured quality.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from campaigns.errors import NotFoundError
from campaigns.lifecycle.predict import Predictions, predict_customers
from campaigns.store.base import utcnow
from recommender.clv import CLVFitError


def refresh_predictions(store: Any, settings: Any, as_of: datetime, **kwargs: Any) -> Predictions:
    """Fit on every order before ``as_of``, replace the stored predictions, return them.

    Raises NotFoundError (with what to do) when there are no orders or nobody has ordered twice.
    """
    from campaigns.lifecycle.sendhour import preferred_hours

    orders = store.order_columns(until=as_of)
    try:
        result = predict_customers(orders, as_of, **kwargs)
    except CLVFitError as exc:
        raise NotFoundError(
            f"cannot predict yet: {exc} (import more orders, then run `retain predict`)"
        ) from None
    hours = preferred_hours(orders, store.customer_zones(), settings.shop_timezone)
    result.details["send_hour"] = hours.details
    store.replace_predictions(result.records(hours.by_customer), result.fit_record(utcnow()))
    return result


__all__ = ["refresh_predictions"]
