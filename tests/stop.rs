//! A stop request ends a verification between random starts with
//! `Error::Stopped` (exit code 130 on the command line); an unraised flag changes
//! nothing.

use feature_collapse::cli::exit_code;
use feature_collapse::stop::StopFlag;
use feature_collapse::task::TaskConfig;
use feature_collapse::verify::{verify_theorem, Theorem, VerifyConfig};
use feature_collapse::Error;

fn task() -> feature_collapse::task::Task {
    TaskConfig {
        n_c: 3,
        s_c: 2,
        len: 2,
        dim: 4,
        ..TaskConfig::default()
    }
    .build()
    .unwrap()
}

#[test]
fn a_raised_flag_stops_verify_before_its_restarts() {
    let task = task();
    let flag = StopFlag::new();
    let cfg = VerifyConfig {
        restarts: 64,
        stop: Some(flag.clone()),
        ..VerifyConfig::default()
    };
    // raised once the prediction and the Hessian are done, as a Ctrl-C would be
    let mut stages = Vec::new();
    let out = verify_theorem(Theorem::One, &task, &cfg, |stage| {
        stages.push(stage.to_string());
        if stage == "restarts" {
            flag.request();
        }
    });
    assert!(matches!(out, Err(Error::Stopped)), "{out:?}");
    assert_eq!(stages, ["prediction", "hessian", "restarts"]);
    assert_eq!(exit_code(&Error::Stopped), 130);
}

#[test]
fn an_unraised_flag_changes_nothing() {
    let task = task();
    let plain = VerifyConfig {
        restarts: 3,
        ..VerifyConfig::default()
    };
    let watched = VerifyConfig {
        stop: Some(StopFlag::new()),
        ..plain.clone()
    };
    let a = verify_theorem(Theorem::One, &task, &plain, |_| {}).unwrap();
    let b = verify_theorem(Theorem::One, &task, &watched, |_| {}).unwrap();
    assert_eq!(a.best_risk.to_bits(), b.best_risk.to_bits());
    assert_eq!(a.verdict, b.verdict);
    assert_eq!(a.restarts.len(), 3);
    assert_eq!(b.restarts.len(), 3);
}
