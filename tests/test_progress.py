"""Long syncs show progress on a terminal and stay quiet in logs."""

from __future__ import annotations

import io

from composer.publish.apply import Progress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_counts_up_to_the_total_on_a_terminal():
    stream = Terminal()
    progress = Progress(100, "writing", stream)
    for _ in range(100):
        progress.step()
    frames = stream.getvalue().split("\r")[1:]
    assert frames[0].endswith(" 25/100")
    assert frames[-1] == "writing [" + "#" * 30 + "] 100/100\n"


def test_progress_is_silent_when_not_a_terminal_or_for_small_syncs():
    log = io.StringIO()
    for _ in range(100):
        Progress(100, "writing", log).step()
    small = Terminal()
    progress = Progress(10, "writing", small)
    for _ in range(10):
        progress.step()
    assert log.getvalue() == "" and small.getvalue() == ""
