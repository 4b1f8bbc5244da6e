//! The text form of a bidirectional strategy (`newest(updated_at, 30)`),
//! read below the model layer: a runtime schema names its type's strategy
//! in text, checked when the schema is registered, and
//! [`bidir::Strategy`](crate::bidir::Strategy) is built from it.

/// A strategy as its text names it (no closure can be named).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum StrategySpec {
    Safe,
    LeftWins,
    RightWins,
    Newest { field: Option<String>, skew: f64 },
    Highest { field: Option<String> },
    Merge(Box<StrategySpec>),
}

impl StrategySpec {
    /// Reads the text form; the error says what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<StrategySpec, &'static str> {
        let t = text.trim();
        let (head, args) = match t.split_once('(') {
            Some((head, rest)) => {
                let inner = rest.strip_suffix(')').ok_or("unclosed parenthesis")?;
                (head.trim(), Some(inner.trim()))
            }
            None => (t, None),
        };
        let number = |s: &str| s.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0);
        let field = |s: &str| -> Result<Option<String>, &'static str> {
            // Anything that reads as a number (or starts like one) was meant as one.
            if s.parse::<f64>().is_ok()
                || s.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+' || c == '.')
            {
                return Err("the skew must be a finite number of at least 0");
            }
            if s.is_empty() || !s.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
                return Err("expected an attribute name");
            }
            Ok(Some(s.to_string()))
        };
        Ok(match (head, args) {
            ("safe", None) => StrategySpec::Safe,
            ("left-wins", None) => StrategySpec::LeftWins,
            ("right-wins", None) => StrategySpec::RightWins,
            ("newest", None) => StrategySpec::Newest { field: None, skew: 0.0 },
            ("newest", Some(a)) => match a.split_once(',') {
                Some((f, skew)) => StrategySpec::Newest {
                    skew: number(skew.trim()).ok_or("the skew must be a number of at least 0")?,
                    field: field(f.trim())?,
                },
                None => match number(a) {
                    Some(skew) => StrategySpec::Newest { field: None, skew },
                    None => StrategySpec::Newest {
                        field: field(a)?,
                        skew: 0.0,
                    },
                },
            },
            ("highest", None) => StrategySpec::Highest { field: None },
            ("highest", Some(a)) => StrategySpec::Highest { field: field(a)? },
            ("merge", None) => StrategySpec::Merge(Box::new(StrategySpec::Safe)),
            ("merge", Some(a)) => StrategySpec::Merge(Box::new(StrategySpec::parse(a)?)),
            ("custom", _) => return Err("a closure cannot be named; pass Strategy::Custom"),
            _ => {
                return Err(
                    "expected safe, left-wins, right-wins, newest, newest(FIELD, SKEW), highest, highest(FIELD), merge(FALLBACK)",
                );
            }
        })
    }
}
