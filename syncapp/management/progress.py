"""Progress lines for commands that move many events, so a long run shows it is moving."""

# Events between two progress lines.
EVERY = 10_000


def _plain(text):
    """Progress is information, not an error, even when it goes to stderr (which commands style as errors)."""
    return text


class Progress:
    """``progress(count)`` writes "<verb> <count> events…" each time ``count`` passes another ``EVERY`` events."""

    def __init__(self, stream, verb):
        self.stream = stream
        self.verb = verb
        self.reported = 0

    def __call__(self, count):
        if count // EVERY > self.reported // EVERY:
            self.stream.write(f"  {self.verb} {count} events…", style_func=_plain)
            self.reported = count
