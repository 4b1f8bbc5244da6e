//! Conflicts and the strategies that decide them.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, ReconcileError, Result};
use crate::key::ModelKey;
use crate::model::{AnyModel, ModelSchema};
use crate::report::{ConflictKind, Resolution};
use crate::strategy_spec::StrategySpec;

/// A conflict as a [`Strategy::Custom`] closure sees it.
pub struct Conflict<'a> {
    /// The model's key.
    pub key: ModelKey,
    /// What each side did.
    pub kind: ConflictKind,
    /// The agreed version, if there was one.
    pub base: Option<&'a dyn AnyModel>,
    /// The left side's version, if it has one.
    pub left: Option<&'a dyn AnyModel>,
    /// The right side's version, if it has one.
    pub right: Option<&'a dyn AnyModel>,
    /// The left side's replica id (its store's name), for tiebreaks.
    pub left_replica: &'a str,
    /// The right side's replica id.
    pub right_replica: &'a str,
}

impl Conflict<'_> {
    /// The model type.
    pub fn model_type(&self) -> &str {
        self.key.model_type()
    }

    /// The same decision on every run and on both sides: the replica whose
    /// id sorts last wins.
    pub fn tiebreak(&self) -> Resolution {
        if self.left_replica >= self.right_replica {
            Resolution::Left
        } else {
            Resolution::Right
        }
    }

    /// Decides by one attribute of both versions: `newer` says whether the
    /// left value wins, `None` for a tie (decided by [`tiebreak`](Self::tiebreak)).
    /// A modification beats a deletion; a value missing on a side leaves
    /// the conflict unapplied.
    fn by_field(&self, field: Option<&str>, newer: impl Fn(&Value, &Value) -> Option<Option<bool>>) -> Resolution {
        let Some(field) = field else {
            return Resolution::Skip;
        };
        match (self.left, self.right) {
            (Some(_), None) => Resolution::Left,
            (None, Some(_)) => Resolution::Right,
            (None, None) => Resolution::Skip,
            (Some(l), Some(r)) => match (l.attribute(field), r.attribute(field)) {
                (Some(a), Some(b)) => match newer(&a, &b) {
                    Some(Some(true)) => Resolution::Left,
                    Some(Some(false)) => Resolution::Right,
                    Some(None) => self.tiebreak(),
                    None => Resolution::Skip,
                },
                _ => Resolution::Skip,
            },
        }
    }
}

/// A user rule for conflicts.
pub type ResolveFn = Arc<dyn Fn(&Conflict<'_>) -> Resolution + Send + Sync>;

/// How conflicts are resolved.
///
/// Every strategy but a closure has a text form, which [`name`](Self::name)
/// writes and [`parse`](Self::parse) reads (a runtime-defined model type
/// names its strategy in its schema this way): `safe`, `left-wins`,
/// `right-wins`, `newest`, `newest(SKEW)`, `newest(FIELD)`,
/// `newest(FIELD, SKEW)`, `highest`, `highest(FIELD)`, `merge` (same as
/// `merge(safe)`), `merge(FALLBACK)`.
///
/// ```
/// use diffsync::bidir::Strategy;
/// let s = Strategy::parse("merge(newest(updated_at, 30))")?;
/// assert_eq!(s.name(), "merge(newest(updated_at, 30))");
/// # Ok::<(), diffsync::Error>(())
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Strategy {
    /// Apply no conflict: log it and leave both sides (the default).
    #[default]
    Safe,
    /// The left side's version wins.
    LeftWins,
    /// The right side's version wins.
    RightWins,
    /// The version whose `field` is newer wins: numbers (epoch seconds, or
    /// any clock) or RFC 3339 strings (compared as text). Numbers less than
    /// `skew` apart are a true conflict, decided by [`Conflict::tiebreak`];
    /// a modification beats a deletion; a missing or non-comparable field
    /// leaves the conflict unapplied. Detection stays by content: the
    /// field only decides.
    Newest {
        /// The timestamp attribute; `None`: the model type's declared one
        /// (`#[diffsync(timestamp)]`, or `timestamp` in its schema).
        field: Option<String>,
        /// Clock skew tolerated between the sides (in the field's unit).
        skew: f64,
    },
    /// The version with the higher number in `field` wins; equal numbers
    /// are decided by [`Conflict::tiebreak`]; a modification beats a deletion.
    Highest {
        /// The version attribute; `None`: the model type's declared one
        /// (`#[diffsync(version)]`, or `version` in its schema).
        field: Option<String>,
    },
    /// Attribute-level merge of update/update conflicts: attributes changed
    /// on one side only merge; attributes changed on both, and the other
    /// kinds of conflict, go to `fallback`.
    Merge {
        /// Decides what merging cannot.
        fallback: Box<Strategy>,
    },
    /// A user closure decides.
    Custom(ResolveFn),
}

impl Strategy {
    /// Newest wins by the model type's declared timestamp field.
    pub fn newest(skew: f64) -> Strategy {
        Strategy::Newest { field: None, skew }
    }

    /// Newest wins by a named timestamp attribute.
    pub fn newest_by(field: impl Into<String>, skew: f64) -> Strategy {
        Strategy::Newest {
            field: Some(field.into()),
            skew,
        }
    }

    /// Highest version wins, by the model type's declared version field.
    pub fn highest() -> Strategy {
        Strategy::Highest { field: None }
    }

    /// Highest version wins, by a named attribute.
    pub fn highest_by(field: impl Into<String>) -> Strategy {
        Strategy::Highest {
            field: Some(field.into()),
        }
    }

    /// Attribute-level merge; what cannot merge goes to `fallback`.
    pub fn merge(fallback: Strategy) -> Strategy {
        Strategy::Merge {
            fallback: Box::new(fallback),
        }
    }

    /// The strategy's text form, as in the log: `safe`, `newest(updated_at, 30)`, ...
    pub fn name(&self) -> String {
        let args = |field: &Option<String>, skew: Option<f64>| {
            let parts: Vec<String> = field
                .iter()
                .cloned()
                .chain(skew.filter(|s| *s != 0.0).map(|s| s.to_string()))
                .collect();
            if parts.is_empty() {
                String::new()
            } else {
                format!("({})", parts.join(", "))
            }
        };
        match self {
            Strategy::Safe => "safe".into(),
            Strategy::LeftWins => "left-wins".into(),
            Strategy::RightWins => "right-wins".into(),
            Strategy::Newest { field, skew } => format!("newest{}", args(field, Some(*skew))),
            Strategy::Highest { field } => format!("highest{}", args(field, None)),
            Strategy::Merge { fallback } => format!("merge({})", fallback.name()),
            Strategy::Custom(_) => "custom".into(),
        }
    }

    /// Reads a strategy's text form (see the type's docs).
    pub fn parse(text: &str) -> Result<Strategy> {
        let spec = StrategySpec::parse(text).map_err(|message| {
            Error::Reconcile(ReconcileError::Strategy {
                strategy: text.to_string(),
                model_type: String::new(),
                message: message.to_string(),
            })
        })?;
        Ok(Strategy::from_spec(spec))
    }

    fn from_spec(spec: StrategySpec) -> Strategy {
        match spec {
            StrategySpec::Safe => Strategy::Safe,
            StrategySpec::LeftWins => Strategy::LeftWins,
            StrategySpec::RightWins => Strategy::RightWins,
            StrategySpec::Newest { field, skew } => Strategy::Newest { field, skew },
            StrategySpec::Highest { field } => Strategy::Highest { field },
            StrategySpec::Merge(fallback) => Strategy::merge(Strategy::from_spec(*fallback)),
        }
    }

    /// The strategy with the fields it leaves to the model type filled
    /// from `schema`; an error when the type declares none.
    pub(super) fn bind(&self, schema: &ModelSchema) -> Result<Strategy> {
        let fail = |what: &str, attr: &str| {
            Error::Reconcile(ReconcileError::Strategy {
                strategy: self.name(),
                model_type: schema.name.to_string(),
                message: format!(
                    "the model type declares no {what} field: mark one with #[diffsync({attr})], set `{attr}` in its schema, or name the field"
                ),
            })
        };
        let check = |f: &str| {
            if schema.attribute_index(f).is_none() {
                return Err(Error::Reconcile(ReconcileError::Strategy {
                    strategy: self.name(),
                    model_type: schema.name.to_string(),
                    message: format!("{f:?} is not an attribute of the model type"),
                }));
            }
            Ok(f.to_string())
        };
        Ok(match self {
            Strategy::Newest { field, skew } => Strategy::Newest {
                field: Some(check(match field {
                    Some(f) => f,
                    None => schema
                        .timestamp
                        .as_deref()
                        .ok_or_else(|| fail("timestamp", "timestamp"))?,
                })?),
                skew: *skew,
            },
            Strategy::Highest { field } => Strategy::Highest {
                field: Some(check(match field {
                    Some(f) => f,
                    None => schema.version.as_deref().ok_or_else(|| fail("version", "version"))?,
                })?),
            },
            Strategy::Merge { fallback } => Strategy::merge(fallback.bind(schema)?),
            other => other.clone(),
        })
    }

    /// The attribute this strategy decides by, if any.
    pub(super) fn clock(&self) -> Option<&str> {
        match self {
            Strategy::Newest { field, .. } | Strategy::Highest { field } => field.as_deref(),
            Strategy::Merge { fallback } => fallback.clock(),
            _ => None,
        }
    }

    pub(super) fn resolve(&self, c: &Conflict<'_>) -> Resolution {
        match self {
            Strategy::Safe => Resolution::Skip,
            Strategy::LeftWins => Resolution::Left,
            Strategy::RightWins => Resolution::Right,
            Strategy::Newest { field, skew } => c.by_field(field.as_deref(), |a, b| match (a, b) {
                (Value::Number(_), Value::Number(_)) => {
                    let (a, b) = (a.as_f64()?, b.as_f64()?);
                    Some(((a - b).abs() > *skew).then_some(a > b))
                }
                (Value::String(a), Value::String(b)) => Some((a != b).then_some(a > b)),
                _ => None,
            }),
            Strategy::Highest { field } => c.by_field(field.as_deref(), |a, b| {
                let (a, b) = (a.as_f64()?, b.as_f64()?);
                Some((a != b).then_some(a > b))
            }),
            Strategy::Merge { fallback } => {
                if c.kind != ConflictKind::UpdateUpdate {
                    return fallback.resolve(c);
                }
                match merge_plan(c, None) {
                    Some(_) => Resolution::Merge,
                    // Attributes changed on both sides: the fallback decides them.
                    None => match fallback.resolve(c) {
                        Resolution::Left | Resolution::Right => Resolution::Merge,
                        other => other,
                    },
                }
            }
            Strategy::Custom(f) => f(c),
        }
    }

    /// For a merge: which side's value wins attributes changed on both.
    pub(super) fn overlap_winner(&self, c: &Conflict<'_>) -> Option<Resolution> {
        match self {
            Strategy::Merge { fallback } => match fallback.resolve(c) {
                r @ (Resolution::Left | Resolution::Right) => Some(r),
                _ => None,
            },
            _ => None,
        }
    }
}

impl std::str::FromStr for Strategy {
    type Err = Error;
    fn from_str(text: &str) -> Result<Strategy> {
        Strategy::parse(text)
    }
}

/// The attributes each side takes from the other in a merge: `(left
/// takes, right takes)`; `None` when an attribute changed on both sides and
/// `overlap` names no winner.
pub(super) fn merge_plan(c: &Conflict<'_>, overlap: Option<Resolution>) -> Option<(Vec<String>, Vec<String>)> {
    let (l, r) = (c.left?.attributes(), c.right?.attributes());
    let b = c.base.map(|m| m.attributes()).unwrap_or_default();
    let (mut left_takes, mut right_takes) = (Vec::new(), Vec::new());
    for (name, lv) in &l {
        let rv = r.get(name);
        if rv == Some(lv) {
            continue;
        }
        let bv = b.get(name);
        if bv == Some(lv) {
            left_takes.push(name.to_string());
        } else if bv == rv {
            right_takes.push(name.to_string());
        } else {
            match overlap? {
                Resolution::Left => right_takes.push(name.to_string()),
                _ => left_takes.push(name.to_string()),
            }
        }
    }
    Some((left_takes, right_takes))
}

impl fmt::Debug for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}
