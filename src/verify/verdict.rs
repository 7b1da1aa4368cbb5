//! The three verdicts of a theorem check.

use serde::{Deserialize, Serialize};

/// What the evidence says about a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check holds.
    Confirmed,
    /// Evidence against the claim: a restart below the prediction beyond
    /// tolerance, or negative transverse curvature at the prediction.
    Refuted,
    /// The search could not decide (restarts failed to converge, or ended
    /// elsewhere above the prediction).
    Inconclusive,
}

impl Verdict {
    /// All verdicts, in report order.
    pub const ALL: [Verdict; 3] = [Verdict::Confirmed, Verdict::Refuted, Verdict::Inconclusive];

    /// Lower-case name, as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Confirmed => "confirmed",
            Verdict::Refuted => "refuted",
            Verdict::Inconclusive => "inconclusive",
        }
    }

    /// Combines the verdicts of several claims: refuted beats inconclusive beats confirmed.
    pub fn worst(self, other: Verdict) -> Verdict {
        use Verdict::*;
        match (self, other) {
            (Refuted, _) | (_, Refuted) => Refuted,
            (Inconclusive, _) | (_, Inconclusive) => Inconclusive,
            _ => Confirmed,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Verdict {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Verdict::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("unknown verdict `{s}` (confirmed, refuted, inconclusive)"))
    }
}
