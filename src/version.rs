//! The crate version, read in one place (`CARGO_PKG_VERSION` of Cargo.toml), and
//! the wrapper that writes it into every JSON report.

use serde::Serialize;

/// The version of this crate (and of the Python package built from it).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `value` serialised as a JSON object with a leading `"version": VERSION` field,
/// followed by the fields of `value` (which must serialise as an object).
#[derive(Debug, Serialize)]
pub struct Versioned<'a, T: Serialize> {
    pub version: &'static str,
    #[serde(flatten)]
    pub value: &'a T,
}

impl<'a, T: Serialize> Versioned<'a, T> {
    /// `value` with the crate version.
    pub fn new(value: &'a T) -> Self {
        Versioned {
            version: VERSION,
            value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_leads_the_fields_of_the_value() {
        #[derive(Serialize)]
        struct Report {
            risk: f64,
            name: &'static str,
        }
        let text = serde_json::to_string(&Versioned::new(&Report {
            risk: 0.5,
            name: "a",
        }))
        .unwrap();
        assert_eq!(
            text,
            format!(r#"{{"version":"{}","risk":0.5,"name":"a"}}"#, VERSION)
        );
    }
}
