"""What the agent can do to a subject model: load it, hook it, stream a corpus through it, cache
its features' activations, and record everything in the DuckDB catalog."""
