//! Client subscriptions: resolving a `subscribe` request against the session, and
//! the per-client view (which electrodes, which layers, how often) used when a frame
//! is encoded for that client.

use std::collections::HashMap;

use super::frames::{
    AllTag, ElectrodeRef, ResolvedSubscription, Selection, Session, SubscribeRequest,
};

/// Electrodes whose traces a new client receives before it subscribes.
pub const DEFAULT_TRACE_ELECTRODES: usize = 4;

/// Highest accepted `rate` (frames per second of each throttled kind).
pub const MAX_RATE: f64 = 1000.0;

/// The subscription a client starts with: the first few electrodes, every layer,
/// every frame.
pub fn default_subscription(session: &Session) -> ResolvedSubscription {
    ResolvedSubscription {
        electrodes: (0..session.electrodes.len().min(DEFAULT_TRACE_ELECTRODES)).collect(),
        layers: session.layers.clone(),
        rate: 0.0,
    }
}

/// Applies `request` on top of `current`; fields the request omits are kept.
/// Fails, with a message for the client, on unknown electrodes or layers or a bad
/// rate, leaving the caller's subscription unchanged.
pub fn resolve(
    request: &SubscribeRequest,
    current: &ResolvedSubscription,
    session: &Session,
) -> Result<ResolvedSubscription, String> {
    let electrodes = match &request.electrodes {
        None => current.electrodes.clone(),
        Some(Selection::All(AllTag::All)) => (0..session.electrodes.len()).collect(),
        Some(Selection::List(list)) => {
            let by_label: HashMap<&str, usize> = session
                .electrodes
                .iter()
                .enumerate()
                .map(|(i, l)| (l.as_str(), i))
                .collect();
            let mut out = Vec::with_capacity(list.len());
            for e in list {
                let index = match e {
                    ElectrodeRef::Index(i) if *i < session.electrodes.len() => *i,
                    ElectrodeRef::Index(i) => {
                        return Err(format!(
                            "electrode index {i} out of range (session has {})",
                            session.electrodes.len()
                        ))
                    }
                    ElectrodeRef::Label(l) => *by_label
                        .get(l.as_str())
                        .ok_or_else(|| "unknown electrode label".to_string())?,
                };
                if !out.contains(&index) {
                    out.push(index);
                }
            }
            out
        }
    };
    let layers = match &request.layers {
        None => current.layers.clone(),
        Some(Selection::All(AllTag::All)) => session.layers.clone(),
        Some(Selection::List(list)) => {
            let mut out = Vec::with_capacity(list.len());
            for &l in list {
                if !session.layers.contains(&l) {
                    return Err(format!("layer {l} is not in the session"));
                }
                if !out.contains(&l) {
                    out.push(l);
                }
            }
            out
        }
    };
    let rate = match request.rate {
        None => current.rate,
        Some(r) if r.is_finite() && (0.0..=MAX_RATE).contains(&r) => r,
        Some(_) => return Err(format!("rate must be between 0 and {MAX_RATE}")),
    };
    Ok(ResolvedSubscription {
        electrodes,
        layers,
        rate,
    })
}

/// A subscription with layer ids mapped to column positions in the session's
/// per-layer arrays, ready for slicing frames.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The subscription as the client sees it.
    pub subscription: ResolvedSubscription,
    /// Position of each subscribed layer in `session.layers`.
    pub layer_columns: Vec<usize>,
}

impl View {
    /// Builds the view of `subscription` in `session`. Layers absent from the
    /// session (after a session change) are left out.
    pub fn new(mut subscription: ResolvedSubscription, session: &Session) -> Self {
        subscription
            .electrodes
            .retain(|&e| e < session.electrodes.len());
        subscription.layers.retain(|l| session.layers.contains(l));
        let layer_columns = subscription
            .layers
            .iter()
            .filter_map(|l| session.layers.iter().position(|x| x == l))
            .collect();
        Self {
            subscription,
            layer_columns,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::frames::Rates;

    fn session() -> Session {
        Session {
            electrodes: vec!["A1".into(), "A2".into(), "B1".into()],
            layers: vec![0, 2, 4],
            model: "m".into(),
            rates: Rates {
                neural_hz: 100.0,
                high_gamma_hz: 100.0,
                alignment_hz: 10.0,
            },
            horizon: None,
            window_s: 10.0,
            electrode_info: Vec::new(),
            bad_channels: Vec::new(),
            recording: None,
            null_threshold: Vec::new(),
        }
    }

    #[test]
    fn resolves_labels_indices_and_keeps_omitted_fields() {
        let s = session();
        let cur = default_subscription(&s);
        assert_eq!(cur.electrodes, vec![0, 1, 2]);
        let req: SubscribeRequest =
            serde_json::from_str(r#"{"electrodes":["B1",0,"B1"],"layers":[4,0]}"#).unwrap();
        let r = resolve(&req, &cur, &s).unwrap();
        assert_eq!(r.electrodes, vec![2, 0]);
        assert_eq!(r.layers, vec![4, 0]);
        assert_eq!(r.rate, 0.0);
        let v = View::new(r, &s);
        assert_eq!(v.layer_columns, vec![2, 0]);
    }

    #[test]
    fn rejects_unknown_electrodes_layers_and_rates() {
        let s = session();
        let cur = default_subscription(&s);
        for bad in [
            r#"{"electrodes":[3]}"#,
            r#"{"electrodes":["Z9"]}"#,
            r#"{"layers":[1]}"#,
            r#"{"rate":-1}"#,
            r#"{"rate":1e9}"#,
        ] {
            let req: SubscribeRequest = serde_json::from_str(bad).unwrap();
            assert!(resolve(&req, &cur, &s).is_err(), "{bad} accepted");
        }
    }
}
