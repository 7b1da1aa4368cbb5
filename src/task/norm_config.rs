//! How a [`TaskConfig`] names its normalization: the `norm` field, or the
//! original `layer_norm` field for plain LayerNorm (docs/theory.md §10).

use super::TaskConfig;
use crate::error::{Error, Result};
use crate::norm::Norm;

impl TaskConfig {
    /// The normalization these settings ask for: `norm` if set, else LayerNorm
    /// with `eps = layer_norm`, else none. Bad input naming `norm` when both
    /// are set and disagree.
    pub fn resolved_norm(&self) -> Result<Norm> {
        match (self.norm, self.layer_norm) {
            (Some(n), None) => Ok(n),
            (Some(n), Some(eps)) if n == (Norm::Layer { eps }) => Ok(n),
            (Some(n), Some(eps)) => Err(Error::invalid(
                "norm",
                n.name(),
                format!("conflicts with layer_norm = {eps} (LayerNorm); give one of them"),
            )),
            (None, Some(eps)) => Ok(Norm::Layer { eps }),
            (None, None) => Ok(Norm::None),
        }
    }

    /// Sets the normalization, in the spelling earlier versions read: plain
    /// LayerNorm and none through `layer_norm` (with `norm` unset), the other
    /// variants through `norm` (with `layer_norm` unset).
    pub fn set_norm(&mut self, norm: Norm) {
        match norm {
            Norm::Layer { eps } => {
                self.layer_norm = Some(eps);
                self.norm = None;
            }
            Norm::None => {
                self.layer_norm = None;
                self.norm = None;
            }
            n => {
                self.layer_norm = None;
                self.norm = Some(n);
            }
        }
    }
}
