"""Plots and explanations."""
