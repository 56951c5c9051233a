"""Label-free error estimates of a regression model: direct loss estimation (NannyML's DLE).

On the labelled reference, one gradient-boosting model learns each row's absolute error and
another its squared error from the features and the prediction; on a window without labels the
mean of the first is the estimated MAE and the root of the mean of the second the estimated RMSE.
Right on average while the relation between inputs and error holds (covariate shift), as the
classification estimates. scikit-learn's HistGradientBoostingRegressor (BSD-3-Clause) does the
learning: it is in the `test` and `examples` extras, not a core dependency, so this module
imports it when a model is fitted. Categorical features are coded by the reference's categories
(an unseen one counts as missing, which the trees route on their own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agent.ml.columns import RawColumn
from agent.ml.realized_metrics import categories

MAX_ROWS = 100_000  # reference rows the loss models learn from
MAX_CATEGORIES = 250  # per categorical feature (the trees' limit is 255 codes)


@dataclass
class LossModel:
    features: list[str]
    categories: dict[str, list[str]]  # the categorical features' reference categories, by code
    absolute: object  # fitted regressors: |error| and error² from (features, prediction)
    squared: object


def _matrix(model_features: list[str], codes: dict[str, list[str]], columns: dict[str, RawColumn],
            predicted: np.ndarray) -> np.ndarray:
    out = np.empty((predicted.size, len(model_features) + 1))
    for i, name in enumerate(model_features):
        column = columns.get(name) or RawColumn.missing(predicted.size)
        if name in codes:
            index = {c: k for k, c in enumerate(codes[name])}
            out[:, i] = [index.get(v, math.nan) if v is not None else math.nan for v in categories(column).tolist()]
        else:
            out[:, i] = np.where(column.is_number, column.numbers, math.nan)
    out[:, -1] = predicted
    return out


def fit_loss(features: dict[str, RawColumn], predicted: np.ndarray, truth: np.ndarray, seed: int = 0) -> LossModel:
    """The loss models of a labelled reference (rows with a finite prediction and label)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    predicted, truth = np.asarray(predicted, dtype=float), np.asarray(truth, dtype=float)
    usable = np.isfinite(predicted) & np.isfinite(truth)
    if np.count_nonzero(usable) < 50:
        raise ValueError(f"direct loss estimation needs 50 labelled rows with a prediction, got "
                         f"{np.count_nonzero(usable)}")
    names = list(features)
    codes = {}
    for name in names:
        column = features[name]
        if (~column.is_number & (categories(column) != None)).any():  # noqa: E711 (strings seen: categorical)
            values, counts = np.unique(categories(column)[categories(column) != None].astype(str),  # noqa: E711
                                       return_counts=True)
            codes[name] = values[np.argsort(-counts, kind="stable")][:MAX_CATEGORIES].tolist()
    x = _matrix(names, codes, features, predicted)[usable]
    error = truth[usable] - predicted[usable]
    if x.shape[0] > MAX_ROWS:
        keep = np.random.default_rng(seed).choice(x.shape[0], MAX_ROWS, replace=False)
        x, error = x[keep], error[keep]
    categorical = np.array([n in codes for n in names] + [False])
    models = [HistGradientBoostingRegressor(categorical_features=categorical if categorical.any() else None,
                                            early_stopping=False, random_state=seed).fit(x, target)
              for target in (np.abs(error), error ** 2)]
    return LossModel(names, codes, *models)


def estimate_loss(model: LossModel, features: dict[str, RawColumn], predicted: np.ndarray) -> dict[str, float]:
    """The estimated MAE and RMSE of a window's predictions (the rows with a finite prediction)."""
    predicted = np.asarray(predicted, dtype=float)
    usable = np.isfinite(predicted)
    if not usable.any():
        return {}
    x = _matrix(model.features, model.categories, features, predicted)[usable]
    absolute = np.maximum(model.absolute.predict(x), 0.0)
    squared = np.maximum(model.squared.predict(x), 0.0)
    return {"mae": float(absolute.mean()), "rmse": float(math.sqrt(squared.mean())), "rows": int(usable.sum())}
