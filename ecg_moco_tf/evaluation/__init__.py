"""Evaluation: AUC with patient-level bootstrap CIs, DeLong's test, operating points, plots."""
from .metrics import (bootstrap_auc_ci, bootstrap_auc_difference, delong_test,
                      mean_difference_ci, evaluate, threshold_at_sensitivity,
                      threshold_metrics, youden_threshold)
