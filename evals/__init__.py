"""Judging explanations: simulators, scorers and the planted-feature benchmark (issues 4 and 7)."""
