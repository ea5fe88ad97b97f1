//! A simulated sender clock for `replay --drift-ppm` / `--offset-jump`: how a second machine's
//! clock (an amplifier's, a transcriber's) drifts and jumps against the server's over a session.
//! The offset is a function of *session* time, so a replay at `--speed K` shows the same drift
//! per session second as the session itself (2 hours at 50 ppm drift 360 ms at any speed).
//!
//! The replay stamps a drifting stream on this clock and publishes the offset on a companion
//! stream ([`CLOCK_STREAM_TYPE`]), as liblsl's `time_correction` would report it for a remote
//! outlet; the server's inlets follow it (`ingest::clock_follow`, `docs/reliability.md`).

/// LSL type of the companion stream that publishes a simulated sender clock's correction.
pub const CLOCK_STREAM_TYPE: &str = "ClockOffset";
/// The `desc` element of a drifting stream that names its companion stream's source_id.
pub const CLOCK_DESC_KEY: &str = "neuralign_simulated_clock";
/// How often (seconds of session time) the replay publishes the correction, as liblsl probes
/// a remote clock every few seconds.
pub const PROBE_INTERVAL_S: f64 = 1.0;

/// Errors of a clock option.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ClockOptionError {
    /// Not `STREAM=VALUE`.
    #[error("{0:?}: expected STREAM=VALUE")]
    NoStream(String),
    /// The value is not what the option takes.
    #[error("{option:?}: {expected}")]
    BadValue {
        /// The option as given.
        option: String,
        /// What was expected.
        expected: &'static str,
    },
}

/// One stream's simulated clock: a constant drift rate and step jumps, both in session time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SenderClock {
    /// Drift, parts per million: the sender's clock gains `ppm · 1e-6` s per session second.
    pub ppm: f64,
    /// Offset jumps: `(at_s, jump_s)`, the clock steps by `jump_s` at session time `at_s`.
    pub jumps: Vec<(f64, f64)>,
}

impl SenderClock {
    /// The sender clock minus the true clock at session time `session_s` (seconds since the
    /// session started): what the sender adds to the true time when it stamps.
    pub fn offset(&self, session_s: f64) -> f64 {
        let jumped: f64 = self
            .jumps
            .iter()
            .filter(|(at, _)| *at <= session_s)
            .map(|(_, jump)| jump)
            .sum();
        self.ppm * 1e-6 * session_s + jumped
    }

    /// Whether a jump falls in `(after_s, until_s]`.
    pub fn jumps_in(&self, after_s: f64, until_s: f64) -> bool {
        self.jumps
            .iter()
            .any(|(at, _)| *at > after_s && *at <= until_s)
    }

    /// Whether this clock differs from the true one at all.
    pub fn is_drifting(&self) -> bool {
        self.ppm != 0.0 || self.jumps.iter().any(|(_, j)| *j != 0.0)
    }
}

/// Parses `STREAM=PPM` (`--drift-ppm`) into the stream name and the drift.
pub fn parse_drift(option: &str) -> Result<(String, f64), ClockOptionError> {
    let (stream, value) = split(option)?;
    match value.parse::<f64>() {
        Ok(ppm) if ppm.is_finite() && ppm.abs() < 1e6 => Ok((stream, ppm)),
        _ => Err(ClockOptionError::BadValue {
            option: option.into(),
            expected: "the drift is a number of parts per million (|ppm| < 1e6)",
        }),
    }
}

/// Parses `STREAM=AT_S:JUMP_S` (`--offset-jump`) into the stream name and the jump.
pub fn parse_jump(option: &str) -> Result<(String, (f64, f64)), ClockOptionError> {
    let (stream, value) = split(option)?;
    let bad = || ClockOptionError::BadValue {
        option: option.into(),
        expected: "a jump is AT_S:JUMP_S, seconds of session time (>= 0) and seconds",
    };
    let (at, jump) = value.split_once(':').ok_or_else(bad)?;
    match (at.parse::<f64>(), jump.parse::<f64>()) {
        (Ok(at), Ok(jump)) if at >= 0.0 && at.is_finite() && jump.is_finite() => {
            Ok((stream, (at, jump)))
        }
        _ => Err(bad()),
    }
}

fn split(option: &str) -> Result<(String, &str), ClockOptionError> {
    match option.rsplit_once('=') {
        Some((stream, value)) if !stream.is_empty() => Ok((stream.to_string(), value)),
        _ => Err(ClockOptionError::NoStream(option.into())),
    }
}

/// The clocks of several streams, from `--drift-ppm` and `--offset-jump` options.
pub fn clocks_from_options(
    drifts: &[String],
    jumps: &[String],
) -> Result<Vec<(String, SenderClock)>, ClockOptionError> {
    let mut clocks: Vec<(String, SenderClock)> = Vec::new();
    fn entry(clocks: &mut Vec<(String, SenderClock)>, stream: String) -> &mut SenderClock {
        let i = match clocks.iter().position(|(s, _)| *s == stream) {
            Some(i) => i,
            None => {
                clocks.push((stream, SenderClock::default()));
                clocks.len() - 1
            }
        };
        &mut clocks[i].1
    }
    for option in drifts {
        let (stream, ppm) = parse_drift(option)?;
        entry(&mut clocks, stream).ppm = ppm;
    }
    for option in jumps {
        let (stream, jump) = parse_jump(option)?;
        entry(&mut clocks, stream).jumps.push(jump);
    }
    Ok(clocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifty_ppm_over_two_hours_is_360_ms() {
        let clock = SenderClock {
            ppm: 50.0,
            jumps: vec![],
        };
        assert_eq!(clock.offset(0.0), 0.0);
        assert!((clock.offset(7200.0) - 0.360).abs() < 1e-12);
        assert!((clock.offset(1.0) - 50e-6).abs() < 1e-15);
        assert!(clock.is_drifting());
        assert!(!SenderClock::default().is_drifting());
    }

    #[test]
    fn jumps_step_the_offset_at_their_session_time_and_add_up() {
        let clock = SenderClock {
            ppm: -20.0,
            jumps: vec![(100.0, 0.5), (200.0, -1.5)],
        };
        assert!((clock.offset(99.999) - (-20e-6 * 99.999)).abs() < 1e-12);
        assert!((clock.offset(100.0) - (0.5 - 20e-6 * 100.0)).abs() < 1e-12);
        assert!((clock.offset(250.0) - (-1.0 - 20e-6 * 250.0)).abs() < 1e-12);
        assert!(clock.jumps_in(99.0, 100.0));
        assert!(!clock.jumps_in(100.0, 150.0));
        assert!(clock.jumps_in(150.0, 1e9));
    }

    #[test]
    fn options_parse_per_stream_and_reject_nonsense() {
        let clocks = clocks_from_options(
            &["amp=50".into(), "words=-3.5".into()],
            &["amp=3600:0.25".into(), "amp=10:-1".into()],
        )
        .unwrap();
        assert_eq!(clocks.len(), 2);
        assert_eq!(clocks[0].0, "amp");
        assert_eq!(clocks[0].1.ppm, 50.0);
        assert_eq!(clocks[0].1.jumps, [(3600.0, 0.25), (10.0, -1.0)]);
        assert_eq!(clocks[1].1.ppm, -3.5);
        // a stream name may itself contain '='; the value is after the last one
        assert_eq!(parse_drift("a=b=7").unwrap(), ("a=b".into(), 7.0));
        assert!(matches!(
            parse_drift("50"),
            Err(ClockOptionError::NoStream(_))
        ));
        assert!(parse_drift("amp=fast").is_err());
        assert!(parse_drift("amp=NaN").is_err());
        assert!(parse_jump("amp=10").is_err());
        assert!(parse_jump("amp=-1:0.5").is_err());
        assert!(parse_jump("=1:0.5").is_err());
    }
}
