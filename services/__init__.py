"""The four services of the pipeline (ws, signal, risk, execution) and their shared runtime.

Each service is a sub-package with its own surface (``services.signal.SignalService``, ...);
this package re-exports nothing, so importing one service never loads the others.
"""

__all__: list[str] = []
