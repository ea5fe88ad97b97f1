//! Client subscriptions: resolving a `subscribe` request against the session, and
//! the per-client view (which models, electrodes and layers, how often) used when a frame
//! is encoded for that client.

use std::collections::HashMap;

use super::frames::{
    AllTag, ElectrodeRef, ModelSelector, ResolvedSubscription, Selection, Session, SubscribeRequest,
};

/// Electrodes whose traces a new client receives before it subscribes.
pub const DEFAULT_TRACE_ELECTRODES: usize = 4;

/// Highest accepted `rate` (frames per second of each throttled kind).
pub const MAX_RATE: f64 = 1000.0;

/// The subscription a client starts with: the first few electrodes, every layer of every
/// model, every frame.
pub fn default_subscription(session: &Session) -> ResolvedSubscription {
    ResolvedSubscription {
        electrodes: (0..session.electrodes.len().min(DEFAULT_TRACE_ELECTRODES)).collect(),
        layers: session.layers.clone(),
        models: (0..session.models.len()).collect(),
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
    let models = match &request.models {
        None => current.models.clone(),
        Some(Selection::All(AllTag::All)) => (0..session.models.len()).collect(),
        Some(Selection::List(list)) => {
            let mut out = Vec::with_capacity(list.len());
            for m in list {
                let index = match m {
                    ModelSelector::Index(i) if *i < session.models.len() => *i,
                    ModelSelector::Index(i) => {
                        return Err(format!(
                            "model index {i} out of range (session has {})",
                            session.models.len()
                        ))
                    }
                    ModelSelector::Name(name) => session
                        .models
                        .iter()
                        .position(|m| &m.tag.name == name)
                        .ok_or_else(|| format!("unknown model {name:?}"))?,
                };
                if !out.contains(&index) {
                    out.push(index);
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
        models,
        rate,
    })
}

/// A subscription with layer ids mapped to column positions in each model's per-layer
/// arrays, ready for slicing frames.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// The subscription as the client sees it.
    pub subscription: ResolvedSubscription,
    /// Per model (session order): `None` when not subscribed, else the subscribed layers
    /// it has.
    pub models: Vec<Option<ModelView>>,
}

/// What a client receives of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelView {
    /// The subscribed layer ids the model has, in subscription order.
    pub layers: Vec<usize>,
    /// Position of each of them in the model's per-layer arrays.
    pub layer_columns: Vec<usize>,
}

impl View {
    /// Builds the view of `subscription` in `session`. Layers and models absent from
    /// the session (after a session change) are left out.
    pub fn new(mut subscription: ResolvedSubscription, session: &Session) -> Self {
        subscription
            .electrodes
            .retain(|&e| e < session.electrodes.len());
        subscription.layers.retain(|l| session.layers.contains(l));
        subscription.models.retain(|&m| m < session.models.len());
        let models = (session.models.iter().enumerate())
            .map(|(m, model)| {
                subscription.models.contains(&m).then(|| {
                    let (layers, layer_columns) = (subscription.layers.iter())
                        .filter_map(|l| Some((*l, model.layers.iter().position(|x| x == l)?)))
                        .unzip();
                    ModelView {
                        layers,
                        layer_columns,
                    }
                })
            })
            .collect();
        Self {
            subscription,
            models,
        }
    }

    /// What the client receives of model `m`; `None` when it is not subscribed.
    pub fn model(&self, m: usize) -> Option<&ModelView> {
        self.models.get(m).and_then(Option::as_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::frames::{ModelTag, Rates, SessionModel};

    fn model(name: &str, layers: Vec<usize>) -> SessionModel {
        SessionModel {
            tag: ModelTag {
                name: name.into(),
                sha256: format!("{name}-hash"),
            },
            layers,
            null_threshold: Vec::new(),
        }
    }

    fn session() -> Session {
        Session {
            electrodes: vec!["A1".into(), "A2".into(), "B1".into()],
            layers: vec![0, 2, 4],
            model: "m".into(),
            models: vec![model("m", vec![0, 2, 4])],
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
        assert_eq!(r.models, vec![0]);
        let v = View::new(r, &s);
        assert_eq!(v.model(0).unwrap().layer_columns, vec![2, 0]);
    }

    #[test]
    fn models_are_chosen_by_index_or_name_and_each_sends_the_layers_it_has() {
        let mut s = session();
        s.models.push(model("n", vec![4, 0]));
        let cur = default_subscription(&s);
        assert_eq!(cur.models, vec![0, 1], "every model by default");
        let v = View::new(cur.clone(), &s);
        assert_eq!(v.model(1).unwrap().layer_columns, vec![1, 0]);
        assert_eq!(v.model(1).unwrap().layers, vec![0, 4]);
        let req: SubscribeRequest =
            serde_json::from_str(r#"{"models":["n"],"layers":[2,4]}"#).unwrap();
        let r = resolve(&req, &cur, &s).unwrap();
        assert_eq!(r.models, vec![1]);
        let v = View::new(r, &s);
        assert!(v.model(0).is_none(), "not subscribed");
        assert_eq!(
            v.model(1).unwrap().layers,
            vec![4],
            "layer 2 is not model n's"
        );
        let req: SubscribeRequest = serde_json::from_str(r#"{"models":[0,1,0]}"#).unwrap();
        assert_eq!(resolve(&req, &cur, &s).unwrap().models, vec![0, 1]);
        for bad in [r#"{"models":[2]}"#, r#"{"models":["x"]}"#] {
            let req: SubscribeRequest = serde_json::from_str(bad).unwrap();
            assert!(resolve(&req, &cur, &s).is_err(), "{bad} accepted");
        }
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
