//! No allocation inside any algorithm's `step` after `init` (issue 11, goal 6): every
//! registered algorithm, on full batches and on mini-batches of the stochastic quadratic.

#[path = "../../kernels/tests/support/counting_alloc.rs"]
mod counting_alloc;

use bilevel_data::stochastic_quadratic::{generate, Config};
use bilevel_kernels::BilevelProblem;
use bilevel_solvers::algorithms::{self, Settings};
use bilevel_solvers::{constants, BatchSizes, Context, Overrides, StepRule};

#[test]
fn no_algorithm_allocates_inside_step() {
    let p = generate(&Config::preset("tiny").unwrap(), 0).unwrap();
    let (x0, y0) = (p.x0(1), vec![0.0; p.dim_y()]);
    let mut failures = Vec::new();
    for name in algorithms::NAMES {
        for batches in [BatchSizes::full(), BatchSizes::all(4)] {
            if *name == "itd" && !batches.is_full() {
                continue;
            }
            // Stochastic BSGM's anytime schedule grows J_s = ⌈c₃(s+1)⌉ every step, and its batch
            // buffers with it (doubling: O(log S) allocations, tested below); here its fixed
            // schedule, which must not allocate at all.
            let fixed_steps = (*name == "bsgm" && !batches.is_full()).then_some(3);
            let settings =
                Settings { batches, inner_steps: Some(3), adjoint_steps: Some(3), fixed_steps, ..Settings::default() }
                    .keep_used(name, StepRule::Default);
            let need = algorithms::needs(name, StepRule::Default, &settings).unwrap();
            let c = constants::resolve(&p, &x0, &y0, &need, &Overrides::default()).unwrap();
            let mut alg = algorithms::build(
                name,
                StepRule::Default,
                &Context { problem: &p, family: "", constants: &c, x0: &x0 },
                &settings,
            )
            .map(|b| b.algorithm)
            .unwrap();
            alg.init(&p, &x0, &y0).unwrap();
            // Warm-up steps: buffers that grow to their size once (batch workspaces) may.
            for _ in 0..3 {
                let _ = alg.step(&p);
            }
            let ((), n) = counting_alloc::count_allocations(|| {
                for _ in 0..5 {
                    let _ = alg.step(&p);
                }
            });
            if n > 0 {
                failures.push(format!(
                    "{name} ({}): {n} allocations in 5 steps",
                    if batches.is_full() { "full" } else { "B = 4" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn bsgms_growing_schedule_allocates_only_when_its_batches_double() {
    let p = generate(&Config::preset("tiny").unwrap(), 0).unwrap();
    let (x0, y0) = (p.x0(1), vec![0.0; p.dim_y()]);
    let settings = Settings { batches: BatchSizes::all(4), c3: Some(1.0), ..Settings::default() };
    let need = algorithms::needs("bsgm", StepRule::Default, &settings).unwrap();
    let c = constants::resolve(&p, &x0, &y0, &need, &Overrides::default()).unwrap();
    let mut alg = algorithms::build(
        "bsgm",
        StepRule::Default,
        &Context { problem: &p, family: "", constants: &c, x0: &x0 },
        &settings,
    )
    .map(|b| b.algorithm)
    .unwrap();
    alg.init(&p, &x0, &y0).unwrap();
    for _ in 0..64 {
        alg.step(&p).unwrap();
    }
    // Steps 65..128: J_s from 65 to 128, one doubling of the buffers at most.
    let ((), n) = counting_alloc::count_allocations(|| {
        for _ in 0..64 {
            alg.step(&p).unwrap();
        }
    });
    assert!(n <= 8, "{n} allocations over 64 steps whose batches grow from 65 to 128");
}
