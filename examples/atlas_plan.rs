//! Prints the instances of an atlas SPEC with the work of one exact evaluation
//! and the parameter count, largest first, and the totals:
//! `cargo run --release --example atlas_plan -- atlas/conjecture.toml`.

use feature_collapse::{atlas, limit};

fn main() -> feature_collapse::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "atlas/conjecture.toml".into());
    let (spec, _) = atlas::load(std::path::Path::new(&path))?;
    let mut rows = Vec::new();
    for i in &spec.instances {
        let t = i.task.build()?;
        rows.push((
            limit::work(&t),
            t.n_params(),
            i.theorem,
            i.grid.clone(),
            i.id.clone(),
        ));
    }
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut per_theorem = [0usize; 3];
    for r in &rows {
        per_theorem[r.2 as usize - 1] += 1;
    }
    println!(
        "{} instances (theorem 1: {}, 2: {}, 3: {}); total work of one evaluation each {:.3e}",
        rows.len(),
        per_theorem[0],
        per_theorem[1],
        per_theorem[2],
        rows.iter().map(|r| r.0).sum::<f64>()
    );
    for r in rows.iter().take(10) {
        println!(
            "{:.3e} work, {} params, theorem {}, grid {}, id {}",
            r.0, r.1, r.2, r.3, r.4
        );
    }
    Ok(())
}
