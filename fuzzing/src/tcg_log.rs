//! `tcg_log`: the firmware's TCG event log (crypto-agile format) as
//! hearth-verify parses and replays it from a quote answer
//! (`hearth_attestation::tcglog`).
//!
//! Input: the log's bytes. Properties: no panic; an accepted log is within
//! the bounds (size, events, algorithms) and encodes back to exactly its
//! bytes; its SHA-256 replay, when it has one, covers PCRs 0-7 and counts
//! exactly the extending events; any SHA-256 digest of an extending event
//! changed changes the replay of that event's PCR.

use hearth_attestation::tcglog::{self, ALG_SHA256, EV_NO_ACTION, MAX_EVENTS, MAX_LOG_BYTES};

/// The target.
pub fn run(data: &[u8]) {
    let Ok(log) = tcglog::parse(data) else {
        return;
    };
    assert!(data.len() <= MAX_LOG_BYTES);
    assert!(log.events.len() <= MAX_EVENTS);
    assert!(!log.spec.algorithms.is_empty() && log.spec.algorithms.len() <= 8);
    assert_eq!(
        tcglog::encode(&log),
        data,
        "an accepted log encodes back to its bytes"
    );
    let Ok(replay) = log.replay_sha256() else {
        return;
    };
    for p in 0u8..8 {
        assert!(replay.values.contains_key(&p) && replay.events.contains_key(&p));
    }
    let extending = log
        .events
        .iter()
        .filter(|e| e.event_type != EV_NO_ACTION)
        .count();
    assert_eq!(replay.events.values().sum::<usize>(), extending);
    // Flip a bit of the last extending event's SHA-256 digest: its PCR
    // replays to another value (SHA-256 extend chains do not collide).
    if let Some(i) = log
        .events
        .iter()
        .rposition(|e| e.event_type != EV_NO_ACTION)
    {
        let mut edited = log.clone();
        let e = &mut edited.events[i];
        let pcr = e.pcr as u8;
        if let Some((_, d)) = e.digests.iter_mut().find(|(a, _)| *a == ALG_SHA256) {
            d[0] ^= 1;
        }
        let other = edited
            .replay_sha256()
            .expect("the same log, one digest changed");
        assert_ne!(other.values[&pcr], replay.values[&pcr]);
    }
}

/// A seed: the synthetic log (SHA-1 and SHA-256 banks, one event in PCR 0
/// and 4, a separator in each of PCRs 0-7).
pub fn seed() -> Vec<u8> {
    tcglog::encode(&tcglog::synthetic(&[
        (0, 0x8000_0008, b"platform firmware blob"),
        (4, 0x8000_0003, b"uki"),
    ]))
}
