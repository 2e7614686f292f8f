"""ftmatrix: a declarative experiment-matrix runner for fine-tuning deep-learning models."""

__version__ = "0.1.0"
