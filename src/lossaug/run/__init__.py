"""A training run: its config, the loop and its epoch API, state, checkpoint and run directory."""
