"""TCP in a capture's flows, as Zeek follows it: endpoint states, history letters, sizes.

`tcp_packet` is Zeek's TCPSessionAdapter::Process without the weirds: the endpoint state machine
(UpdateStateMachine), the history letters (update_history, with the logarithmic T and W), the
sequence space that gives Zeek's byte counts, and the stream holes behind missed_bytes.
"""

from __future__ import annotations

from homecall.sources.pcap_flows import (
    ACK,
    CLOSE_LINGER_US,
    CLOSED,
    ESTABLISHED,
    FIN,
    INACTIVE,
    PARTIAL,
    RESET,
    RST,
    SYN,
    SYN_ACK_SENT,
    SYN_SENT,
    TIMEOUT_US,
    TOO_LARGE_SEQ_DELTA,
    Endpoint,
    Flow,
    seq_delta,
)

__all__ = ["tcp_packet"]

_OPEN = (ESTABLISHED, PARTIAL)
_POWERS_OF_TEN = frozenset(10**k for k in range(12))


def _scaled(flow: Flow, letter: str, count: int) -> None:
    if count in _POWERS_OF_TEN:
        flow.history.append(letter)


def tcp_packet(
    flow: Flow,
    from_orig: bool,
    flags: int,
    seq: int,
    ack: int,
    window: int,
    length: int,
    ts_us: int,
) -> None:
    """Update `flow` with one TCP segment of `length` payload bytes (Zeek's Process)."""
    ep, peer = (flow.orig, flow.resp) if from_orig else (flow.resp, flow.orig)
    if not flags & 0x07 and ep.state in _OPEN and peer.state != INACTIVE:
        _open_segment(flow, ep, peer, from_orig, flags, seq, ack, window, length, ts_us)
        return
    syn, fin, rst, is_ack = flags & SYN, flags & FIN, flags & RST, flags & ACK
    seg_len = length + (1 if syn else 0) + (1 if fin else 0) - (length if rst else 0)
    end = seq + seg_len
    state = ep.state
    if state == INACTIVE:
        if syn:
            ep.init_seq(seq, end)
        else:
            ep.init_seq(seq - 1, seq)
    elif (
        syn and state != CLOSED and (state != RESET or ep.prev_state == INACTIVE) and seq != ep.isn
    ):
        ep.init_seq(seq, end)
    rel = seq_delta(seq, ep.isn)
    _history(flow, from_orig, flags, rel, length)
    if window == 0 and not rst and peer.state != CLOSED and state != RESET:
        ep.zero_windows += 1
        _scaled(flow, "W" if from_orig else "w", ep.zero_windows)
    if not (flow.orig.did_close and flow.resp.did_close):
        flow.last_us = ts_us
    if fin:
        ep.fin_count += 1
    if is_ack:
        if peer.state == INACTIVE:
            peer.init_seq(ack - 1, ack - 1)
        elif not rst:
            delta = seq_delta(ack, peer.ack_abs)
            if delta > 0 and not (ack == 0 and delta > TOO_LARGE_SEQ_DELTA):
                peer.ack_abs = ack
                peer.acked += delta
    delta_last = seq_delta(end, ep.top_abs)
    if length and not rst and ep.state != RESET:
        _track_holes(ep, seq_delta(seq, ep.top_abs), length)
    if (syn or rst) and abs(delta_last) > TOO_LARGE_SEQ_DELTA:
        pass
    elif fin and ep.top == 1:
        ep.top_abs, ep.top = end & 0xFFFFFFFF, ep.top + delta_last
    elif ep.state == RESET:
        pass
    elif delta_last > 0:
        ep.top_abs, ep.top = end & 0xFFFFFFFF, ep.top + delta_last
    elif length:
        ep.rxmit += 1
        _scaled(flow, "T" if from_orig else "t", ep.rxmit)
    _state_machine(flow, ep, peer, from_orig, flags, length)


def _open_segment(
    flow: Flow,
    ep: Endpoint,
    peer: Endpoint,
    from_orig: bool,
    flags: int,
    seq: int,
    ack: int,
    window: int,
    length: int,
    ts_us: int,
) -> None:
    """tcp_packet for the bulk of a connection: no SYN, FIN or RST, both sides seen and the
    sender open, so no state changes; the same updates, without the general machinery."""
    if length:
        letter = "D" if from_orig else "d"
    elif flags & ACK:
        letter = "A" if from_orig else "a"
    else:
        letter = ""
    if letter and letter not in flow.hist_seen:
        flow.hist_seen.add(letter)
        flow.history.append(letter)
    if window == 0 and peer.state != CLOSED:
        ep.zero_windows += 1
        _scaled(flow, "W" if from_orig else "w", ep.zero_windows)
    if not (ep.did_close and peer.did_close):
        flow.last_us = ts_us
    if flags & ACK:
        delta = ((ack - peer.ack_abs + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        if delta > 0 and not (ack == 0 and delta > TOO_LARGE_SEQ_DELTA):
            peer.ack_abs = ack
            peer.acked += delta
    ahead = ((seq - ep.top_abs + 0x80000000) & 0xFFFFFFFF) - 0x80000000
    if length:
        if ahead or ep.holes:
            _track_holes(ep, ahead, length)
        if ahead + length > 0:
            ep.top_abs = (seq + length) & 0xFFFFFFFF
            ep.top += ahead + length
        else:
            ep.rxmit += 1
            _scaled(flow, "T" if from_orig else "t", ep.rxmit)
    elif ahead > 0:
        ep.top_abs = seq & 0xFFFFFFFF
        ep.top += ahead


def _history(flow: Flow, from_orig: bool, flags: int, rel: int, length: int) -> None:
    """Zeek's update_history: S H A D F R I Q, upper case from the originator."""
    syn, fin, rst = flags & SYN, flags & FIN, flags & RST
    ep = flow.orig if from_orig else flow.resp
    bits = (1 if syn else 0) + (1 if fin else 0) + (1 if rst else 0)
    if bits > 1:
        letter = "I" if fin and rst else "Q"
        flow.once(letter if from_orig else letter.lower())
    elif bits == 1:
        if syn:
            letter = "H" if flags & ACK else "S"
            letter = letter if from_orig else letter.lower()
            if flow.once(letter) and rel != ep.hist_syn:
                flow.history.append(letter)
            ep.hist_syn = rel
        elif fin:
            letter = "F" if from_orig else "f"
            if flow.once(letter) and rel + length != ep.hist_fin:
                flow.history.append(letter)
            ep.hist_fin = rel + length
        else:
            letter = "R" if from_orig else "r"
            if flow.once(letter) and rel != ep.hist_rst:
                flow.history.append(letter)
            ep.hist_rst = rel
    elif length:
        flow.once("D" if from_orig else "d")
    elif flags & ACK:
        flow.once("A" if from_orig else "a")


def _track_holes(ep: Endpoint, ahead: int, length: int) -> None:
    """Remember stream ranges skipped over, and forget those later filled (missed_bytes).

    `ahead` is where the segment starts relative to the highest sequence number seen so far.
    """
    if 0 < ahead < TOO_LARGE_SEQ_DELTA:
        if ep.holes is None:
            ep.holes = []
        ep.holes.append([ep.top, ep.top + ahead])
    elif ep.holes and ahead < 0:
        lo = ep.top + ahead
        hi = lo + length
        kept: list[list[int]] = []
        for a, b in ep.holes:
            if hi <= a or lo >= b:
                kept.append([a, b])
                continue
            if a < lo:
                kept.append([a, lo])
            if hi < b:
                kept.append([hi, b])
        ep.holes = kept


def _state_machine(
    flow: Flow, ep: Endpoint, peer: Endpoint, from_orig: bool, flags: int, length: int
) -> None:
    """Zeek's UpdateStateMachine, without the weirds; marks the sides that closed."""
    syn, fin, rst, is_ack = flags & SYN, flags & FIN, flags & RST, flags & ACK
    state = ep.state
    if state == INACTIVE:
        if syn:
            if from_orig:
                ep.set_state(SYN_ACK_SENT if is_ack else SYN_SENT)
            else:
                if peer.state == SYN_SENT:
                    peer.set_state(ESTABLISHED)
                ep.set_state(ESTABLISHED)
        if fin:
            ep.set_state(CLOSED)
        if rst:
            ep.set_state(RESET)
        if ep.state == INACTIVE:
            if not from_orig and length == 0 and flow.orig.state == SYN_SENT:
                pass  # an ACK of the SYN before the SYN-ACK: not a partial connection
            elif is_ack and peer.state == ESTABLISHED:
                ep.set_state(ESTABLISHED)
            else:
                ep.set_state(PARTIAL)
    elif state in (SYN_SENT, SYN_ACK_SENT):
        if fin:
            ep.set_state(CLOSED)
        if rst:
            ep.set_state(RESET)
    elif state in (ESTABLISHED, PARTIAL):
        if syn and state == PARTIAL and peer.state == INACTIVE and not is_ack:
            ep.set_state(SYN_SENT)
        if fin and not rst:
            ep.set_state(CLOSED)
            if peer.state == RESET and peer.prev_state == CLOSED:
                peer.set_state(CLOSED)
        if rst:
            ep.set_state(RESET)
    elif state == CLOSED and rst and peer.state != CLOSED:
        ep.set_state(RESET)
    if fin or rst:
        ep.did_close = True
    if (
        ep.state == RESET
        or peer.state == RESET
        or (ep.did_close and (peer.did_close or peer.state == INACTIVE))
    ):
        flow.closed = True
        flow.attempt = False
        flow.timeout_us = CLOSE_LINGER_US
    else:
        flow.attempt = flow.orig.state in (SYN_SENT, SYN_ACK_SENT) and flow.resp.state == INACTIVE
        flow.timeout_us = TIMEOUT_US["tcp"]
