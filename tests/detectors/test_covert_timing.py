from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from homecall.detectors import covert_timing, segments
from homecall.detectors import ipd_statistics as stats
from homecall.detectors.covert_timing import CovertTimingConfig
from homecall.detectors.covert_timing_scoring import Measures, in_scope, score_flows
from homecall.findings import Finding
from homecall.pipeline import import_paths
from homecall.store import Store
from homecall.store.tables import Tables
from tests.detectors.packet_flows import (
    Flow,
    binary_channel,
    fleet_delays,
    jitterbug,
    legit_delays,
    marked,
    sending,
    store_of,
)
from tests.detectors.zeek_logs import assert_contract, assert_spark_agrees, open_store

CFG = CovertTimingConfig()
PCAPS = "pcap"
SSH_CLIENT = ("192.168.2.1", "192.168.2.16", 22)  # test7: an interactive SSH session (PROVENANCE)


def _run(tables: Tables, cfg: CovertTimingConfig = CFG) -> list[Finding]:
    return list(covert_timing.DETECTOR.run(tables, cfg))


def _laid(*flows: list[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Delays in seconds -> (us, offsets), as the detector lays out a batch."""
    delays = np.concatenate([np.round(np.asarray(f) * 1e6) for f in flows]).astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum([len(f) for f in flows]))).astype(np.int64)
    return delays, offsets


# ---------------------------------------------------------------------------- the statistics


def test_regularity_is_the_stdev_of_relative_window_differences() -> None:
    # windows of 4 with standard deviations s, 2s, s: |s-2s|/s = 1, |s-s|/s = 0, |2s-s|/2s = 0.5
    delays, offsets = _laid([1, 3, 1, 3, 2, 6, 2, 6, 1, 3, 1, 3])
    value = stats.regularity_batch(delays, offsets, window=4, min_windows=3, max_windows=10)
    assert value[0] == pytest.approx(np.std([1.0, 0.0, 0.5], ddof=1))
    too_short = stats.regularity_batch(delays, offsets, window=4, min_windows=4, max_windows=10)
    assert np.isnan(too_short[0])


@pytest.mark.parametrize(
    ("codes", "bins", "cce", "length"),
    [
        ([0, 1] * 50, 2, 0.0, 2),  # alternating: the next symbol is certain given one
        ([1] * 100, 2, 0.0, 1),  # constant: no entropy at all
        ([0, 0, 1, 1] * 25, 2, 0.0, 3),  # period 4: certain given the two before
    ],
)
def test_corrected_conditional_entropy_of_hand_worked_sequences(
    codes: list[int], bins: int, cce: float, length: int
) -> None:
    offsets = np.array([0, len(codes)], dtype=np.int64)
    found = stats.conditional_entropy_batch(
        np.array(codes, dtype=np.int64), offsets, bins=bins, max_pattern=6
    )
    assert found.cce_bits[0] == pytest.approx(cce, abs=1e-3)  # 50 of one pattern, 49 of one
    assert found.pattern_length[0] >= length  # certain from this pattern length on


def test_cce_of_independent_symbols_stays_near_their_entropy() -> None:
    codes = np.random.default_rng(1).integers(0, 5, 2000)
    found = stats.conditional_entropy_batch(
        codes, np.array([0, 2000], dtype=np.int64), bins=5, max_pattern=10
    )
    assert found.entropy_bits[0] == pytest.approx(np.log2(5), abs=0.01)
    assert found.cce_bits[0] > 0.95 * found.entropy_bits[0]


def test_ks_distance_leaves_the_flow_itself_out_of_the_baseline() -> None:
    same = [0.1 * k for k in range(1, 11)]
    later = [0.1 * k for k in range(11, 21)]
    for flows, expected in (((same, same), 0.0), ((same, later), 1.0)):
        delays, offsets = _laid(*flows)
        ordered = segments.sort(delays.astype(np.float64), offsets).astype(np.int64)
        own, own_offsets = stats.subsample(ordered, offsets, 10)
        pool = stats.Baseline.of(own, own_offsets, len(delays))
        distance = stats.ks_batch(ordered, offsets, pool, own, own_offsets)
        assert distance == pytest.approx([expected, expected])


def test_lattice_finds_the_step_of_quantised_delays_and_not_of_smooth_ones() -> None:
    rng = np.random.default_rng(2)
    smooth = rng.uniform(0.1, 0.9, 300)
    quantised = np.round(smooth / 0.01) * 0.01 + rng.normal(0, 0.0002, 300)
    delays, offsets = _laid(smooth, quantised)
    found = stats.lattice_batch(
        delays,
        offsets,
        min_spacing_s=CFG.lattice_min_step_s,
        max_spacing_s=CFG.lattice_max_step_s,
        quartile_factor=CFG.lattice_quartile_factor,
        max_delay_s=CFG.lattice_max_delay_s,
        alpha=CFG.lattice_alpha,
    )
    assert found.z[0] < found.threshold_z[0]
    assert found.z[1] > 5 * found.threshold_z[1]
    assert found.spacing_s[1] == pytest.approx(0.01, rel=0.01)
    assert found.concentration[1] > 0.95


def _measures(**values: float) -> Measures:
    base = {
        "delays": 500,
        "median_s": 0.1,
        "iqr_s": 0.1,
        "regularity": 5.0,
        "ks_distance": np.nan,
        "ks_p_value": np.nan,
        "cce_bits": 2.2,
        "cce_pattern": 3,
        "entropy_bits": 2.3,
        "fleet_bins": False,
        "lattice_step_s": 0.005,
        "lattice_concentration": 0.1,
        "lattice_z": 5.0,
        "lattice_threshold_z": 20.0,
    } | values
    return Measures(**{k: np.array([v]) for k, v in base.items()})


@pytest.mark.parametrize(
    ("values", "low", "high"),
    [
        ({}, 0.0, 0.0),
        ({"regularity": 0.05}, 0.45, 0.45),  # one kind of evidence alone: "low" at most
        ({"lattice_z": 100.0}, 0.45, 0.45),
        ({"lattice_z": 100.0, "lattice_step_s": 0.0078125}, 0.25, 0.25),  # a Windows timer
        ({"regularity": 0.05, "lattice_z": 100.0}, 0.75, 0.75),  # two: "high"
        ({"regularity": 0.16}, 0.1, 0.3),  # between the bars: partial
    ],
)
def test_score_needs_two_kinds_of_evidence_for_more_than_low(
    values: dict[str, float], low: float, high: float
) -> None:
    score = score_flows(_measures(**values), np.array([0]), CFG).score[0]
    assert low - 1e-9 <= score <= high + 1e-9


# ---------------------------------------------------------------------------- synthetic channels

# legitimate flows of one service (port 443), each with parameters of its own; ground truth:
# the channels the generator puts beside them
FLEET = 20


def _fleet(rng: np.random.Generator, n: int = 300) -> list[Flow]:
    return [
        sending(Flow(f"10.0.1.{10 + i}", f"203.0.113.{i}", 443), fleet_delays(rng, n))
        for i in range(FLEET)
    ]


def test_binary_channel_among_a_fleet_is_high_with_its_evidence(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    delays, _ = binary_channel(rng, 300, zero_s=0.05, one_s=0.15, jitter_s=0.01)
    channel = sending(Flow("10.0.0.99", "198.51.100.7", 443), delays)
    found = _run(open_store(store_of(tmp_path, [*_fleet(rng), channel])))
    top = found[0]
    assert (top.src, top.dst, top.dst_port) == ("10.0.0.99", "198.51.100.7", 443)
    assert top.score >= 0.75  # "high": stationary and unlike the fleet
    e = top.evidence
    assert {"regularity", "ks"} <= set(e["tests"])
    assert e["baseline"] == "fleet"
    assert e["baseline_flows"] == FLEET
    assert e["regularity"] < CFG.regularity_weak
    assert e["ks_distance"] > CFG.ks_weak
    assert e["ks_p_value"] < CFG.ks_alpha
    assert e["ks_fleet_z"] > CFG.outlier_z_strong
    assert e["sender"] == "10.0.0.99"
    assert e["delays"] == 300
    assert 0.04 < e["ipd_median_s"] < 0.16
    assert e["uids"] == [channel.uid]
    assert all(f.score < 0.5 for f in found[1:])  # no legitimate flow reaches "medium"


def test_binary_channel_without_a_fleet_is_low_and_says_so(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    delays, _ = binary_channel(rng, 300, zero_s=0.05, one_s=0.15, jitter_s=0.01)
    channel = sending(Flow("10.0.0.99", "198.51.100.7", 4444), delays)
    (finding,) = _run(open_store(store_of(tmp_path, [channel])))
    assert 0.25 <= finding.score < 0.5
    assert finding.evidence["baseline"] == "per-flow"
    assert finding.evidence["ks_distance"] is None
    assert finding.evidence["tests"] == ["regularity"]
    assert "per-flow tests only" in finding.summary


def test_jitterbug_on_keystrokes_shows_its_timing_window(tmp_path: Path) -> None:
    rng = np.random.default_rng(13)
    keystrokes = legit_delays(rng, 300, burst_s=0.15, pause_s=0.8, stay=0.9, sigma=0.6)
    delays, _ = jitterbug(rng, keystrokes, window_s=0.02, noise_s=0.0003)
    flows = [
        sending(Flow("10.0.0.98", "198.51.100.8", 22), delays),
        sending(Flow("10.0.0.97", "198.51.100.9", 22), keystrokes),  # the same, untouched
    ]
    (finding,) = _run(open_store(store_of(tmp_path, flows)))
    assert finding.src == "10.0.0.98"
    assert finding.evidence["strengths"]["lattice"] == 1.0
    assert finding.evidence["lattice_step_ms"] == pytest.approx(10.0, rel=0.01)  # w / 2
    assert finding.evidence["lattice_concentration"] > 0.9
    # the lattice and a little of the keystroke model's own stationarity (regularity 0.24)
    assert 0.45 <= finding.score < 0.5


def test_benign_look_alikes_stay_quiet(tmp_path: Path) -> None:
    rng = np.random.default_rng(14)
    n = 400
    flows = [
        # a bulk transfer: segments at line rate with idle gaps
        sending(Flow("10.0.2.1", "203.0.113.50", 443), rng.exponential(0.0002, n)),
        # a video call: a frame every 33 ms, 1 ms of jitter (a timer)
        sending(
            Flow("10.0.2.2", "203.0.113.51", 3478, proto="udp"), 0.033 + rng.normal(0, 0.001, n)
        ),
        # an application heartbeat every 2 s
        sending(Flow("10.0.2.3", "203.0.113.52", 8883), 2.0 + rng.normal(0, 0.01, n)),
        # DNS queries to one resolver (regular, from one port)
        sending(
            Flow("10.0.2.4", "203.0.113.53", 53, proto="udp"),
            binary_channel(rng, n, zero_s=0.05, one_s=0.15, jitter_s=0.01)[0],
        ),
        # interactive typing and requests: bursty, not stationary
        sending(
            Flow("10.0.2.5", "203.0.113.54", 22),
            legit_delays(rng, n, burst_s=0.15, pause_s=0.8, stay=0.9, sigma=0.6),
        ),
        # independent requests (Poisson)
        sending(Flow("10.0.2.6", "203.0.113.55", 443), rng.exponential(0.3, n)),
        # Windows TCP keep-alives: one byte without PSH every second, between real data
        marked(
            sending(Flow("10.0.2.7", "203.0.113.56", 443), np.full(n, 1.0), payload=1), tcp_flags=16
        ),
    ]
    tables = open_store(store_of(tmp_path, flows))
    assert _run(tables) == []
    candidates = tables.to_pyarrow(covert_timing.candidates(tables, CFG))
    # the keep-alive probes are not data, and DNS is out of scope: neither is a candidate
    assert not {"10.0.2.7", "10.0.2.4"} & set(candidates.column("src").to_pylist())


def test_contract_on_a_hand_built_capture(tmp_path: Path) -> None:
    rng = np.random.default_rng(15)
    delays, _ = binary_channel(rng, 200, zero_s=0.05, one_s=0.15, jitter_s=0.01)
    store = store_of(
        tmp_path, [*_fleet(rng, 200), sending(Flow("10.0.0.99", "198.51.100.7", 443), delays)]
    )
    assert_contract(lambda t: covert_timing.DETECTOR.run(t, CFG), store)


@pytest.mark.spark
def test_duckdb_and_spark_agree(tmp_path: Path, spark: object) -> None:
    rng = np.random.default_rng(16)
    delays, _ = binary_channel(rng, 200, zero_s=0.05, one_s=0.15, jitter_s=0.01)
    store = store_of(
        tmp_path, [*_fleet(rng, 200), sending(Flow("10.0.0.99", "198.51.100.7", 443), delays)]
    )
    assert_spark_agrees(lambda t: covert_timing.DETECTOR.run(t, CFG), store, spark)


# ---------------------------------------------------------------------------- real captures


@pytest.fixture(scope="module")
def capture_stores(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Store]:
    """Each capture of c2-samples/pcap imported on its own (PROVENANCE.txt: benign controls and
    ordinary C2, no covert timing channel)."""
    stores = {}
    for path in sorted((samples / PCAPS).glob("*/*.pcap")):
        store = Store(tmp_path_factory.mktemp(path.stem) / "store")
        import_paths([path], store)
        stores[path.stem] = store
    assert stores
    return stores


def test_real_captures_give_nothing_at_medium_or_above(capture_stores: dict[str, Store]) -> None:
    # Nothing at all is reported on them: the C2 in these captures (CALDERA agents, the slips
    # curl loop every 2 s, Hide'N Seek) opens a connection per check-in or sleeps seconds
    # between packets (sandcat's one keep-alive connection: 30-60 s), which is a beacon's
    # business; the only flows in scope are test7's interactive SSH session, whose typing is
    # not stationary (regularity 36 and 47).
    for name, store in capture_stores.items():
        found = _run(open_store(store))
        assert all(f.score < 0.5 for f in found), (name, [f.summary for f in found])


def test_real_ssh_session_is_judged_and_quiet(capture_stores: dict[str, Store]) -> None:
    tables = open_store(capture_stores["test7-malicious"])
    rows = tables.to_pyarrow(covert_timing.candidates(tables, CFG))
    src, dst, port = SSH_CLIENT
    typed = [
        i
        for i, r in enumerate(rows.drop_columns(["ts"]).to_pylist())
        if (r["src"], r["dst"], r["dst_port"], r["sender"]) == (src, dst, port, src)
    ]
    assert typed, "the client side of the SSH session is a candidate"
    batch = rows.take(typed).combine_chunks().to_batches()[0]
    delays, offsets = covert_timing.batch_delays(batch)
    assert in_scope(delays, offsets, CFG).any()
    assert not [f for f in _run(tables) if f.src == src and f.evidence["sender"] == src]


def test_jitterbug_on_the_real_ssh_keystrokes(
    capture_stores: dict[str, Store], tmp_path: Path
) -> None:
    """The client's real keystroke delays (test7), stretched by JitterBug: found by its lattice;
    the same delays untouched: nothing."""
    tables = open_store(capture_stores["test7-malicious"])
    rows = tables.to_pyarrow(covert_timing.candidates(tables, CFG))
    src, _, port = SSH_CLIENT
    picked = [
        i
        for i, r in enumerate(rows.drop_columns(["ts"]).to_pylist())
        if (r["sender"], r["dst_port"]) == (src, port) and r["packets"] > 100
    ]
    batch = rows.take(picked[:1]).combine_chunks().to_batches()[0]
    real_us, _ = covert_timing.batch_delays(batch)
    keystrokes = real_us / 1e6
    rng = np.random.default_rng(17)
    stretched, _ = jitterbug(rng, keystrokes, window_s=0.02, noise_s=0.0003)
    flows = [
        sending(Flow("10.0.0.98", "198.51.100.8", 22), stretched),
        sending(Flow("10.0.0.97", "198.51.100.9", 22), keystrokes),
    ]
    found = _run(open_store(store_of(tmp_path, flows)))
    assert [f.src for f in found] == ["10.0.0.98"]
    assert found[0].evidence["lattice_step_ms"] == pytest.approx(10.0, rel=0.01)
