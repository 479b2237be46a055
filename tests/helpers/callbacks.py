"""Collects a knob/button backend's callbacks (which arrive on the backend's own threads)."""

import threading


class Recorder:
    """``on_controls`` / ``on_button`` callbacks that record what they get; ``wait_for`` blocks until a
    predicate over the recorder holds (or fails the test after ``timeout`` seconds)."""

    def __init__(self):
        self.controls, self.buttons = [], []
        self.changed = threading.Condition()

    def on_controls(self, c):
        with self.changed:
            self.controls.append(c)
            self.changed.notify_all()

    def on_button(self, b):
        with self.changed:
            self.buttons.append(b)
            self.changed.notify_all()

    def wait_for(self, predicate, timeout=3.0):
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self), timeout), (self.controls, self.buttons)
