"""Test and fault harness: the mixed-version matrix, local Redis launchers and the pytest plugin."""
