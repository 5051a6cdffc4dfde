"""The explainer agent and the `interp` command line."""
