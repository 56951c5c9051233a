"""Label-free performance estimates against NannyML's, on NannyML's own synthetic data, each against
the realised value per chunk.

- multiclass (`load_synthetic_multiclass_classification_dataset`, three card products): NannyML's
  CBPE with the per-class probabilities; Vigil's estimate from what its convention carries, the
  predicted class and the top-class confidence (`agent.ml.performance`), fitted on the same
  reference. Printed per metric (accuracy; macro precision, recall, F1): the mean absolute error
  of each estimate against the realised value over the analysis chunks.
- regression (`load_synthetic_car_price_dataset`): NannyML's DLE (direct loss estimation,
  LightGBM) against Vigil's (`agent.ml.estimates`, scikit-learn's HistGradientBoostingRegressor),
  both fitted on the reference's features and predictions; the same mean absolute errors for MAE
  and RMSE.

    .venv-bench/bin/python bench/estimates_vs_nannyml.py [--chunk-size 6000]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agent.ml import performance  # noqa: E402
from agent.ml.columns import RawColumn  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--chunk-size", type=int, default=6000)
args = parser.parse_args()


def chunks(n: int) -> list[slice]:
    return [slice(i, i + args.chunk_size) for i in range(0, n - args.chunk_size + 1, args.chunk_size)]


def mean_error(estimates: list[float], realized: list[float]) -> float:
    return float(np.mean(np.abs(np.array(estimates) - np.array(realized))))


def multiclass(nml) -> None:
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

    reference, analysis, targets = nml.load_synthetic_multiclass_classification_dataset()
    analysis = analysis.merge(targets, on="id")
    classes = ["prepaid_card", "highstreet_card", "upmarket_card"]
    probabilities = {c: f"y_pred_proba_{c}" for c in classes}
    metrics = ["accuracy", "precision", "recall", "f1"]
    cbpe = nml.CBPE(y_pred_proba=probabilities, y_pred="y_pred", y_true="y_true", problem_type="classification_multiclass",
                    metrics=["accuracy", "precision", "recall", "f1"], chunk_size=args.chunk_size)
    cbpe.fit(reference)
    theirs = cbpe.estimate(analysis).filter(period="analysis").to_df()

    def outputs(frame) -> performance.Outputs:
        confidence = frame[list(probabilities.values())].to_numpy().max(axis=1)
        return performance.Outputs(frame["y_pred"].to_numpy(dtype=object), None, confidence, None)

    perf = performance.build(RawColumn.from_values(reference["y_true"].tolist()), outputs(reference))
    realized = {m: [] for m in metrics}
    ours = {m: [] for m in metrics}
    for part in chunks(len(analysis)):
        frame = analysis.iloc[part]
        t, p = frame["y_true"], frame["y_pred"]
        realized["accuracy"].append(accuracy_score(t, p))
        realized["precision"].append(precision_score(t, p, average="macro"))
        realized["recall"].append(recall_score(t, p, average="macro"))
        realized["f1"].append(f1_score(t, p, average="macro"))
        estimate = performance.estimate(perf, outputs(frame))
        for m in metrics:
            ours[m].append(estimate[m])
    print(f"multiclass (NannyML {nml.__version__} synthetic card data, {len(realized['f1'])} chunks of "
          f"{args.chunk_size}): mean |estimate - realised|")
    print("  metric      nannyml_cbpe   vigil")
    for m in metrics:
        nannyml_values = theirs[(m, "value")].to_numpy()[:len(realized[m])]
        print(f"  {m:10s}  {mean_error(list(nannyml_values), realized[m]):12.4f}  {mean_error(ours[m], realized[m]):6.4f}")


def regression(nml) -> None:
    from agent.ml import estimates

    reference, analysis, targets = nml.load_synthetic_car_price_dataset()
    analysis = analysis.merge(targets, on="id")
    features = ["car_age", "km_driven", "price_new", "accident_count", "door_count", "fuel", "transmission"]
    dle = nml.DLE(feature_column_names=features, y_pred="y_pred", y_true="y_true", metrics=["mae", "rmse"],
                  chunk_size=args.chunk_size)
    dle.fit(reference)
    theirs = dle.estimate(analysis).filter(period="analysis").to_df()
    numeric = [f for f in features if f not in ("fuel", "transmission")]

    def table(frame) -> dict[str, RawColumn]:
        return {f: RawColumn.from_values(frame[f].tolist()) for f in features}

    fitted = estimates.fit_loss(table(reference), reference["y_pred"].to_numpy(float), reference["y_true"].to_numpy(float))
    realized = {"mae": [], "rmse": []}
    ours = {"mae": [], "rmse": []}
    for part in chunks(len(analysis)):
        frame = analysis.iloc[part]
        error = frame["y_true"].to_numpy(float) - frame["y_pred"].to_numpy(float)
        realized["mae"].append(float(np.abs(error).mean()))
        realized["rmse"].append(float(np.sqrt((error ** 2).mean())))
        estimate = estimates.estimate_loss(fitted, table(frame), frame["y_pred"].to_numpy(float))
        for m in ours:
            ours[m].append(estimate[m])
    print(f"regression (NannyML car-price data, {len(realized['mae'])} chunks of {args.chunk_size}; numeric "
          f"features {', '.join(numeric)} and the categorical ones): mean |estimate - realised|, "
          f"in the realised value's units (mean realised MAE {np.mean(realized['mae']):.1f})")
    print("  metric  nannyml_dle   vigil")
    for m in ours:
        nannyml_values = theirs[(m, "value")].to_numpy()[:len(realized[m])]
        print(f"  {m:6s}  {mean_error(list(nannyml_values), realized[m]):11.2f}  {mean_error(ours[m], realized[m]):7.2f}")


if __name__ == "__main__":
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # it would call home
    import nannyml

    logging.disable(logging.WARNING)
    multiclass(nannyml)
    if "--multiclass-only" not in sys.argv:
        regression(nannyml)
