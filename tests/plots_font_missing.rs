//! With `FCOLLAPSE_FONT` naming a missing file, plotting fails with a clear
//! `Error::Plot` instead of panicking. This is its own test binary because the
//! font is looked up once per process.

use feature_collapse::plots;
use feature_collapse::Error;

#[test]
fn missing_font_is_a_clear_plot_error() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("plots_font_missing");
    // Only test in this binary, so no other thread reads the environment.
    std::env::set_var(plots::FONT_ENV, dir.join("no-such-font.ttf"));
    let err = plots::norms_vs_rank(&dir.join("fig"), "t", &[1.0, 2.0], None, false).unwrap_err();
    match &err {
        Error::Plot(msg) => {
            assert!(msg.contains(plots::FONT_ENV), "{msg}");
            assert!(msg.contains("fonts-dejavu-core"), "{msg}");
        }
        other => panic!("expected Error::Plot, got {other:?}"),
    }
    assert_eq!(feature_collapse::cli::exit_code(&err), 3);
    // The outcome is remembered.
    assert!(matches!(plots::ensure_font(), Err(Error::Plot(_))));
    assert!(!dir.join("fig.png").exists());
}
