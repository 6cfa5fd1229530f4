"""The four services of the pipeline (ws, signal, risk, execution) and their shared runtime."""
