"""A restoration run in the app: its plan and estimate, the worker thread, the controller, resume state."""
