"""Progress lines (rate, ETA) and log files: what a user sees when output is not a terminal."""

import logging

from mepipe.logs import Progress, format_duration, get_logger, log_file, setup_logging


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_plain_progress_lines_have_rate_and_eta_and_respect_the_interval(caplog):
    clock = FakeClock()
    log = logging.getLogger("mepipe.test_progress")
    log.setLevel(logging.INFO)
    log.addHandler(caplog.handler)  # the mepipe logger may not propagate to the root
    log.propagate = False
    try:
        with Progress("build x", 10, unit="clips", logger=log, interval_s=5.0, clock=clock) as p:
            clock.t += 2.0
            p.advance(2)  # 2 s < 5 s: no line yet
            assert not caplog.records
            clock.t += 4.0
            p.advance(1, info="3 failed")  # 6 s since start: a line
            assert len(caplog.records) == 1
            msg = caplog.records[0].getMessage()
            assert "build x: 3/10 clips (30%)" in msg and "0.50 clips/s" in msg
            assert "ETA 0:00:14" in msg and msg.endswith("; 3 failed")
        assert caplog.records[-1].getMessage().startswith("build x: 3/10 clips")  # closing line
    finally:
        log.removeHandler(caplog.handler)
        log.propagate = True


def test_unknown_total_and_durations():
    clock = FakeClock()
    p = Progress("scan", None, unit="files", logger=logging.getLogger("mepipe.t2"), clock=clock)
    clock.t += 3.0
    p.advance(6)
    assert p.line().startswith("scan: 6 files, 2.00 files/s") and "ETA ?" in p.line()
    p.set_total(12)
    assert p.eta == 3.0
    assert format_duration(3725.4) == "1:02:05" and format_duration(float("nan")) == "?"


def test_log_file_receives_debug_lines_even_when_console_is_quiet(tmp_path, capsys):
    setup_logging(-1, rich=False)
    log = get_logger("mepipe.test_file")
    with log_file(tmp_path / "job.log"):
        log.debug("detail line")
        log.info("info line")
        log.warning("warn line")
    log.info("after the block")
    text = (tmp_path / "job.log").read_text()
    assert "detail line" in text and "info line" in text and "warn line" in text
    assert "after the block" not in text
    err = capsys.readouterr().err
    assert "warn line" in err and "info line" not in err
    setup_logging(0, rich=False)
