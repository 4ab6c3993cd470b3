"""Built-in task plugins; each registers through the spikformer_suite.tasks entry-point group."""
