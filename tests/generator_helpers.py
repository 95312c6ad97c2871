"""Running the engine's event generators in tests."""


def drain(gen):
    """Every event ``gen`` yields, and what it returns: ``(return value, events)``."""
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return stop.value, events
