//! `IntOrString` values as workloads use them: `maxSurge: 1` or `maxSurge: "25%"`.
//!
//! Kubernetes resolves a percentage against a total (a Deployment's replicas) with a rounding
//! direction chosen per field: `maxSurge` rounds up and `maxUnavailable` rounds down, so that
//! 25% of 3 replicas is a surge of 1 and an unavailability of 0 — a rollout of a small Deployment
//! still makes progress and never dips below what was asked for (`intstr.GetScaledValueFromIntOrPercent`).

use serde_json::Value;

/// Why a value is not an `IntOrString` a workload accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntOrPercentError {
    #[error(
        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
    )]
    NotPercent,
    #[error("must be an integer or a percent string")]
    WrongType,
    #[error("must be greater than or equal to 0")]
    Negative,
}

/// An `IntOrString` parsed: an absolute number or a percentage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOrPercent {
    Int(i64),
    Percent(i64),
}

impl IntOrPercent {
    /// Parses a JSON number or a `"N%"` string; negative values are refused.
    pub fn parse(v: &Value) -> Result<IntOrPercent, IntOrPercentError> {
        let out = match v {
            Value::Number(n) => IntOrPercent::Int(n.as_i64().ok_or(IntOrPercentError::WrongType)?),
            Value::String(s) => {
                let digits = s.strip_suffix('%').ok_or(IntOrPercentError::NotPercent)?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(IntOrPercentError::NotPercent);
                }
                IntOrPercent::Percent(digits.parse().map_err(|_| IntOrPercentError::NotPercent)?)
            }
            _ => return Err(IntOrPercentError::WrongType),
        };
        match out {
            IntOrPercent::Int(n) | IntOrPercent::Percent(n) if n < 0 => {
                Err(IntOrPercentError::Negative)
            }
            ok => Ok(ok),
        }
    }

    /// The value against `total`: a percentage scaled and rounded up or down.
    pub fn scaled(self, total: i64, round_up: bool) -> i64 {
        match self {
            IntOrPercent::Int(n) => n,
            IntOrPercent::Percent(p) => {
                let x = p.saturating_mul(total);
                if round_up { (x + 99) / 100 } else { x / 100 }
            }
        }
    }

    /// Whether the value is zero (`0` or `"0%"`).
    pub fn is_zero(self) -> bool {
        matches!(self, IntOrPercent::Int(0) | IntOrPercent::Percent(0))
    }
}

/// `v` (or `default` when absent or null) resolved against `total`; invalid values count as the default.
pub fn scaled_or(v: Option<&Value>, default: &str, total: i64, round_up: bool) -> i64 {
    let parsed = v
        .filter(|x| !x.is_null())
        .and_then(|x| IntOrPercent::parse(x).ok())
        .or_else(|| IntOrPercent::parse(&Value::from(default)).ok())
        .unwrap_or(IntOrPercent::Int(0));
    parsed.scaled(total, round_up)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn percentages_round_as_kubernetes_does() {
        let p = IntOrPercent::parse(&json!("25%")).unwrap();
        assert_eq!(p.scaled(3, true), 1);
        assert_eq!(p.scaled(3, false), 0);
        assert_eq!(p.scaled(4, false), 1);
        assert_eq!(p.scaled(10, true), 3);
        assert_eq!(IntOrPercent::parse(&json!(2)).unwrap().scaled(100, true), 2);
        assert_eq!(scaled_or(None, "25%", 8, true), 2);
        assert_eq!(scaled_or(Some(&json!("x")), "25%", 8, false), 2);
    }

    #[test]
    fn bad_values() {
        for (v, e) in [
            (json!("25"), IntOrPercentError::NotPercent),
            (json!("%"), IntOrPercentError::NotPercent),
            (json!("-5%"), IntOrPercentError::NotPercent),
            (json!(-1), IntOrPercentError::Negative),
            (json!(1.5), IntOrPercentError::WrongType),
            (json!(true), IntOrPercentError::WrongType),
        ] {
            assert_eq!(IntOrPercent::parse(&v), Err(e), "{v}");
        }
        assert!(IntOrPercent::parse(&json!("0%")).unwrap().is_zero());
    }
}
