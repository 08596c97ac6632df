//! Fuzz-style robustness: mutated, truncated and spliced models are imported and run
//! in-process; each attempt must return a value or an error, never panic.

use speck::{Engine, EngineOptions, Tensor};
use std::panic::{catch_unwind, AssertUnwindSafe};

const SEEDS: &[&str] = &[
    "block_mbv3_bneck.onnx",
    "block_lga.onnx",
    "block_lda_aqu.onnx",
];

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Load and, when that works, run with normal and NaN inputs. Returns whether it loaded.
fn exercise(bytes: &[u8], dir: &std::path::Path) -> bool {
    let p = dir.join("m.onnx");
    std::fs::write(&p, bytes).unwrap();
    let Ok(mut e) = Engine::load(&p, &EngineOptions::default()) else {
        return false;
    };
    let inputs: Vec<Vec<usize>> = e.inputs().map(|(_, s)| s.to_vec()).collect();
    for fill in [0.5f32, f32::NAN] {
        let xs: Vec<Tensor> = inputs
            .iter()
            .map(|s| Tensor::from_f32(s, vec![fill; s.iter().product()]).unwrap())
            .collect();
        let _ = e.run(&xs);
    }
    true
}

fn mutate(base: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = base.to_vec();
    match rng.below(4) {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
        }
        1 => b.truncate(rng.below(b.len())),
        2 => {
            let i = rng.below(b.len());
            b[i] = rng.next() as u8;
        }
        _ => {
            // Duplicate a random span (repeated fields, bogus lengths).
            let i = rng.below(b.len());
            let n = rng.below(64).min(b.len() - i);
            let span = b[i..i + n].to_vec();
            b.splice(i..i, span);
        }
    }
    b
}

#[test]
fn mutated_models_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut loaded = 0;
    let mut total = 0;
    for seed in SEEDS {
        let base =
            std::fs::read(format!("{}/tests/data/{seed}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert!(exercise(&base, dir.path()), "{seed} loads unmutated");
        for i in 0..120 {
            let m = mutate(&base, &mut rng);
            if std::env::var_os("FUZZ_TRACE").is_some() {
                // Leave the input behind so a hang can be reproduced with `speck info`.
                eprintln!("{seed} mutation {i}");
                std::fs::write(std::env::temp_dir().join(format!("fuzz_{seed}_{i}")), &m).unwrap();
            }
            let r = catch_unwind(AssertUnwindSafe(|| exercise(&m, dir.path())));
            assert!(r.is_ok(), "{seed} mutation {i} panicked");
            loaded += r.unwrap() as usize;
            total += 1;
        }
    }
    // Some mutations hit weights only and still load: the run path is exercised too.
    assert!(loaded > 0 && loaded < total, "{loaded}/{total} loaded");
}
