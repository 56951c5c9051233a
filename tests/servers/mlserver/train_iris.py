"""Trains the iris classifier MLServer serves, with the server venv's own scikit-learn (so it unpickles).

Usage: train_iris.py OUT.joblib. The iris data ships with scikit-learn; nothing is downloaded.
"""

import sys

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

features, classes = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=500).fit(features, classes), sys.argv[1])
