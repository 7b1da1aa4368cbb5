//! `fcollapse predict`: the predicted collapsed constants.

use super::task_args::PresetArg;
use super::TaskArgs;
use crate::collapse::{self, Form, Phase, Prediction};
use crate::display::fixed;
use crate::error::Result;
use crate::experiments::Preset;
use crate::task::Task;
use crate::Versioned;
use clap::{Args, ValueEnum};
use serde::Serialize;

/// The JSON object of `predict --json`: the prediction's own fields, the task,
/// the phase and the critical weight decay (`null` with LayerNorm).
#[derive(Serialize)]
struct PredictJson<'a> {
    #[serde(flatten)]
    prediction: &'a Prediction,
    task: &'a Task,
    phase: Phase,
    lambda_critical: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormArg {
    /// Full latent set K = n_c^L (exact there).
    Full,
    /// Exact for the drawn latent set.
    LatentSet,
    /// Symmetric (mean-field) approximation used by the paper.
    MeanField,
}

impl From<FormArg> for Form {
    fn from(f: FormArg) -> Form {
        match f {
            FormArg::Full => Form::Full,
            FormArg::LatentSet => Form::LatentSet,
            FormArg::MeanField => Form::MeanField,
        }
    }
}

#[derive(Debug, Args)]
#[command(mut_arg("classes", |a| a.help(
    "Number of classes K <= n_c^L, drawn uniformly from Z with --seed (default: with --preset, \
     the preset's K, 1000, when below n_c^L; otherwise the full latent set K = n_c^L)"
)))]
pub struct PredictArgs {
    /// A paper experiment's settings (explicit flags override it).
    #[arg(long, value_enum)]
    pub preset: Option<PresetArg>,
    /// Which reduced objective to minimise (default: full for the full latent set, else mean-field).
    #[arg(long, value_enum)]
    pub form: Option<FormArg>,
    #[command(flatten)]
    pub task: TaskArgs,
    /// Print one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

pub(super) fn print_prediction_line(p: &Prediction) {
    let r = if p
        .r
        .iter()
        .all(|v| (v - p.r[0]).abs() <= 1e-14 * p.r[0].abs().max(1.0))
    {
        format!("rho = {}", fixed(p.r[0], 12))
    } else {
        let shown: Vec<String> = p.r.iter().take(6).map(|v| fixed(*v, 6)).collect();
        format!(
            "r_beta = [{}{}]",
            shown.join(", "),
            if p.r.len() > 6 { ", ..." } else { "" }
        )
    };
    println!(
        "  prediction type {:?} ({} form): {}, b = {}, R = {}",
        p.kind,
        p.form,
        r,
        fixed(p.u_norm, 12),
        fixed(p.risk, 15)
    );
}

/// The predicted phase, with `sqrt(lambda_W lambda_U)` and `lambda_critical`.
pub(super) fn print_phase_line(task: &Task) {
    match collapse::lambda_critical(task) {
        Some(l) => println!(
            "  phase {} (sqrt(lambda_W lambda_U) = {}, lambda_critical = {l:.9})",
            collapse::predicted_phase(task),
            fixed(task.lambda_geo(), 6)
        ),
        None => println!(
            "  phase {} (--norm {}: no critical weight decay)",
            collapse::predicted_phase(task),
            task.norm().name()
        ),
    }
}

pub(super) fn run(a: &PredictArgs) -> Result<i32> {
    let base = a.preset.map(|p| Preset::from(p).task()).unwrap_or_default();
    let cfg = a.task.apply(base, 0.0)?;
    // The theory's LayerNorm has eps = 0: predictions ignore eps.
    let task = cfg.build()?;
    let form = match a.form {
        Some(f) => f.into(),
        None if task.full_latent() => Form::Full,
        None => Form::MeanField,
    };
    let pred = collapse::predict(&task, form)?;
    if a.json {
        let v = PredictJson {
            prediction: &pred,
            task: &task,
            phase: collapse::predicted_phase(&task),
            lambda_critical: collapse::lambda_critical(&task),
        };
        println!("{}", serde_json::to_string(&Versioned::new(&v))?);
    } else {
        println!("task       {}", &task);
        print_prediction_line(&pred);
        println!(
            "  word norm (a, sqrt(d) or mean r_beta) = {}",
            fixed(pred.word_norm, 12)
        );
        print_phase_line(&task);
        if let Some(e) = pred.risk_error {
            println!("  risk is a Monte-Carlo estimate, standard error {e:.2e}");
        }
    }
    Ok(0)
}
