"""Attribution graphs through transcoders: the frozen replacement model, the graph, its influence and pruning."""
