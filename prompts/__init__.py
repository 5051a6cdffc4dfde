"""Prompt templates as versioned files; their hash travels with every result (issue 4)."""
