"""The console's pure rules: staleness, chart geometry, durations for people, certificate expiry, bounded
Hubject labels."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from bridge.certificates import CertificateError, certificate_expiry, not_after
from bridge.console.charts import HEIGHT, PAD_LEFT, WIDTH, line_chart, nice_top, scale
from bridge.console.history import History, mean_since
from bridge.feeds import FeedHealth, FeedKind, is_stale, silence
from bridge.metrics import HTTP_STATUSES, NO_ANSWER, OTHER, hubject_labels
from bridge.status import describe_duration
from oicp.codes import CODE_CATALOGUE, classify
from oicp.errors import ConnectError, HTTPStatusError, RejectedError

times = st.floats(min_value=0, max_value=4e9, allow_nan=False)


@given(last=st.none() | times, started=times, now=times, threshold=st.floats(0, 1e6))
def test_a_feed_is_stale_exactly_when_silent_for_longer_than_the_threshold(
    last: float | None, started: float, now: float, threshold: float
) -> None:
    quiet = silence(last, started, now)
    assert quiet >= 0
    assert is_stale(last, started, now, threshold) == (threshold > 0 and quiet > threshold)


@given(started=times, gap=st.floats(0, 1e6))
def test_a_feed_never_heard_from_counts_its_silence_from_the_start(started: float, gap: float) -> None:
    assert silence(None, started, started + gap) == pytest.approx(gap, abs=1e-6)


def test_staleness_zero_turns_the_check_off() -> None:
    assert not is_stale(None, 0.0, 1e9, 0.0)


def test_the_tracker_keeps_a_stored_poll_success_newer_than_its_own() -> None:
    now = [100.0]
    feeds = FeedHealth(stale_after=10, sources=["s"], clock=lambda: now[0])
    feeds.poll_failed("s", "boom")
    now[0] = 200.0
    (report,) = feeds.report(200.0, stored_polls={"s": (195.0, None, None)})
    assert report.state.kind is FeedKind.POLL
    assert report.state.last_success_at == 195.0
    assert not report.stale
    assert not report.failing
    (report,) = feeds.report(200.0, stored_polls={})
    assert report.stale
    assert report.failing


@given(
    points=st.lists(st.tuples(times, st.floats(-1e9, 1e12, allow_nan=False)), max_size=50),
    start=times,
    span=st.floats(0, 1e6),
    top=st.floats(0, 1e12),
)
def test_chart_points_never_leave_the_plot(
    points: list[tuple[float, float]], start: float, span: float, top: float
) -> None:
    for x, y in scale(points, start, start + span, top):
        assert PAD_LEFT <= x <= WIDTH
        assert 0 <= y <= HEIGHT


@given(st.floats(0, 1e12))
def test_the_axis_top_is_round_and_above_every_value(value: float) -> None:
    top = nice_top(value)
    assert top >= value
    assert top >= 1
    assert f"{top:.0f}".rstrip("0") in {"1", "2", "5"}


def test_a_chart_without_samples_says_so_and_one_with_samples_draws_a_line() -> None:
    assert "no samples yet" in line_chart("t", {}, 0, 3600)
    drawn = line_chart("t", {"DE*ABC": [(10, 1), (20, 5)]}, 0, 3600)
    assert "<polyline" in drawn
    assert "DE*ABC" in drawn
    assert "<script" not in drawn


def test_chart_titles_and_names_are_escaped() -> None:
    assert "<b>" not in line_chart("<b>", {"<i>": [(1, 1), (2, 2)], "x": [(1, 1)]}, 0, 10)


def test_history_keeps_the_window_and_the_mean_push_duration_per_sample() -> None:
    history = History(interval=10, keep=60)
    for i in range(20):
        history.add(i * 10.0, {"A": i}, {"A": float(i)}, (i * 0.5, float(i)))
    assert len(history.samples) == 7
    assert history.series("backlog")["A"][-1] == (190.0, 19.0)
    assert history.series("push_latency")["all"][-1] == (190.0, 0.5)
    assert mean_since(None, (1, 1)) is None
    assert mean_since((1, 1), (1, 1)) is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "0.2 s"),
        (12, "12 s"),
        (75, "1 min 15 s"),
        (3600, "1 h"),
        (3660, "1 h 1 min"),
        (200_000, "2 d 7 h"),
    ],
)
def test_durations_read_like_a_person_says_them(seconds: float, text: str) -> None:
    assert describe_duration(seconds) == text


@pytest.mark.parametrize(
    "not_after_time",
    [dt.datetime(2031, 5, 17, 8, 30, tzinfo=dt.UTC), dt.datetime(2051, 1, 2, 3, 4, 5, tzinfo=dt.UTC)],
)
def test_certificate_expiry_matches_what_cryptography_reads(
    tmp_path: Path, not_after_time: dt.datetime
) -> None:
    # 2051 is past 2049: RFC 5280 switches from UTCTime to GeneralizedTime there
    ca = trustme.CA()
    leaf = ca.issue_cert("cpo.example", not_after=not_after_time)
    path = tmp_path / "client.pem"
    path.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    parsed = x509.load_pem_x509_certificate(path.read_bytes()).not_valid_after_utc
    assert certificate_expiry(path) == parsed.timestamp() == not_after_time.timestamp()


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_certificate_error(der: bytes) -> None:
    with contextlib.suppress(CertificateError):
        not_after(der)


def test_a_file_without_a_certificate_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "key.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n")
    with pytest.raises(CertificateError, match="no PEM certificate"):
        certificate_expiry(path)
    with pytest.raises(CertificateError, match="cannot read"):
        certificate_expiry(tmp_path / "missing.pem")


@given(status=st.integers(100, 599), code=st.text(max_size=4))
def test_hubject_labels_stay_within_the_known_values(status: int, code: str) -> None:
    allowed_status = {*HTTP_STATUSES, OTHER, NO_ANSWER}
    allowed_code = {*CODE_CATALOGUE, OTHER, NO_ANSWER}
    for error in (
        HTTPStatusError(status, ""),
        RejectedError(code, None, None, info=classify(code)),
        ConnectError("down"),
        None,
    ):
        http_status, oicp_code = hubject_labels(error)
        assert http_status in allowed_status
        assert oicp_code in allowed_code
