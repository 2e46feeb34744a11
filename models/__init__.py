"""Networks, checkpoints and the model zoo. Imports torch only."""
