//! The `speck` command line: argument parsing and thin wrappers over the library.

mod bench;
#[cfg(feature = "host-tools")]
mod bundle;
#[cfg(feature = "onnx")]
mod compile;
#[cfg(feature = "host-tools")]
mod deploy;
mod detect;
mod eval;
#[cfg(feature = "host-tools")]
mod flash;
#[cfg(feature = "npy")]
mod infer;
mod info;
mod model_path;
#[cfg(feature = "onnx")]
mod quantize;
mod run;
mod tile_args;
#[cfg(not(all(feature = "onnx", feature = "npy", feature = "host-tools")))]
mod unavailable;

use clap::{Parser, Subcommand};

/// speck: find tiny objects in camera frames, fast, on small boards.
#[derive(Parser, Debug)]
#[command(name = "speck", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// More log output (-v info, -vv debug); RUST_LOG also works.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
}

const EXAMPLES: &str = "Examples:
  speck detect examples/data/images --out out/          # box people, write annotated images
  speck detect frame.jpg --json --conf 0.4              # one JSON object per image
  speck info models/speck-tiny.onnx                     # ops, parameters, MACs, memory
  speck bench --threads 2 --runs 50                     # latency of the default model
  speck infer model.onnx input.npy --out outs/          # raw tensors for parity checks
  speck detect examples/data/images --tile 512x512      # sliced inference for tiny objects
  speck eval --gt examples/data/annotations.json --images examples/data/images --tile 512x512
  speck quantize m.onnx --calib frames/ -o m-int8.onnx  # int8 QDQ model from calibration frames
  speck compile m.onnx --target rpi5 -o m.speck         # compiled model, loads without ONNX
  speck run --source /dev/video0 --serve                # live: webcam in, http://127.0.0.1:8080/ out

  speck bundle --target rpi5 -o speck-rpi5.tar.gz       # binary, model, unit, scripts for a board
  speck deploy --target rpi5 --host pi@cam1.local      # ssh install, health check, rollback
  speck flash --target rpi5 --bundle speck-rpi5.tar.gz --image raspios.img";

#[derive(Subcommand, Debug)]
enum Command {
    /// Detect objects in images or folders of images.
    Detect(detect::Args),
    /// Run a model on raw .npy tensors and write its outputs as .npy.
    #[cfg(feature = "npy")]
    Infer(infer::Args),
    /// Run a model on raw .npy tensors (needs `.npy` support, which this build leaves out).
    #[cfg(not(feature = "npy"))]
    Infer(unavailable::Args),
    /// Describe a model: ops, parameters, MACs, peak activation memory, metadata.
    Info(info::Args),
    /// Measure inference latency.
    Bench(bench::Args),
    /// Score detections against COCO / TinyPerson ground truth (AP, AP50, miss rate).
    Eval(eval::Args),
    /// Quantize a float model to an int8 QDQ ONNX model, calibrated on image frames.
    #[cfg(feature = "onnx")]
    Quantize(quantize::Args),
    /// Quantize (needs the ONNX importer, which this build leaves out).
    #[cfg(not(feature = "onnx"))]
    Quantize(unavailable::Args),
    /// Compile an ONNX model to a .speck file that loads without the ONNX importer.
    #[cfg(feature = "onnx")]
    Compile(compile::Args),
    /// Compile a model (needs the ONNX importer, which this build leaves out).
    #[cfg(not(feature = "onnx"))]
    Compile(unavailable::Args),
    /// Live detection: camera, pipe, video file or folder in; HTTP, MQTT, recording out.
    Run(run::Args),
    /// Make a reproducible install bundle (.tar.gz) for a board.
    #[cfg(feature = "host-tools")]
    Bundle(bundle::Args),
    /// Make an install bundle (a host tool, which this device build leaves out).
    #[cfg(not(feature = "host-tools"))]
    Bundle(unavailable::Args),
    /// Install on a running board over ssh; health-check, roll back on failure.
    #[cfg(feature = "host-tools")]
    Deploy(deploy::Args),
    /// Install on a board over ssh (a host tool, which this device build leaves out).
    #[cfg(not(feature = "host-tools"))]
    Deploy(unavailable::Args),
    /// Install a bundle into a board's OS disk image (SD card / eMMC image), offline.
    #[cfg(feature = "host-tools")]
    Flash(flash::Args),
    /// Install into an OS disk image (a host tool, which this device build leaves out).
    #[cfg(not(feature = "host-tools"))]
    Flash(unavailable::Args),
}

/// Shared engine flags.
#[derive(clap::Args, Debug, Clone)]
pub struct EngineArgs {
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Use only the portable reference kernels (for debugging).
    #[arg(long)]
    reference: bool,
    /// Skip graph optimisations (fusion, folding, rewrites).
    #[arg(long)]
    no_optimize: bool,
    /// Run QDQ (quantized) models as float fake quantization instead of int8 kernels
    /// (also env SPECK_INT8=0).
    #[arg(long)]
    no_int8: bool,
    /// Run float convolutions in fp16 arithmetic on CPUs that have it (aarch64 with FEAT_FP16:
    /// Raspberry Pi 5, Jetson Orin), as ncnn does there; ignored on other CPUs.
    #[arg(long)]
    fp16: bool,
}

impl EngineArgs {
    fn options(&self) -> speck::EngineOptions {
        speck::EngineOptions {
            threads: self.threads.max(1),
            optimize: !self.no_optimize,
            reference_only: self.reference,
            int8: !self.no_int8,
            fp16: self.fp16,
        }
    }
}

/// Parse arguments and run; errors print as one line and exit non-zero.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let level = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .init();
    quiet_panics();
    let result = std::panic::catch_unwind(|| match cli.command {
        Command::Detect(a) => detect::run(a),
        #[cfg(feature = "npy")]
        Command::Infer(a) => infer::run(a),
        #[cfg(not(feature = "npy"))]
        Command::Infer(a) => unavailable::run("infer", unavailable::Missing::Npy, a),
        Command::Info(a) => info::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Eval(a) => eval::run(a),
        #[cfg(feature = "onnx")]
        Command::Quantize(a) => quantize::run(a),
        #[cfg(feature = "host-tools")]
        Command::Bundle(a) => bundle::run(a),
        #[cfg(feature = "host-tools")]
        Command::Deploy(a) => deploy::run(a),
        #[cfg(feature = "host-tools")]
        Command::Flash(a) => flash::run(a),
        #[cfg(not(feature = "host-tools"))]
        Command::Bundle(a) => unavailable::run("bundle", unavailable::Missing::HostTools, a),
        #[cfg(not(feature = "host-tools"))]
        Command::Deploy(a) => unavailable::run("deploy", unavailable::Missing::HostTools, a),
        #[cfg(not(feature = "host-tools"))]
        Command::Flash(a) => unavailable::run("flash", unavailable::Missing::HostTools, a),
        #[cfg(not(feature = "onnx"))]
        Command::Quantize(a) => unavailable::run("quantize", unavailable::Missing::Onnx, a),
        #[cfg(feature = "onnx")]
        Command::Compile(a) => compile::run(a),
        #[cfg(not(feature = "onnx"))]
        Command::Compile(a) => unavailable::run("compile", unavailable::Missing::Onnx, a),
        Command::Run(a) => run::run(a),
    })
    .unwrap_or_else(|p| {
        Err(anyhow::anyhow!(
            "internal error: {}",
            speck::panic_message(&*p)
        ))
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Panics that the library contains (third-party code asserting on malformed models) must
/// not print; uncontained ones become an `error:` line in `main`. `RUST_BACKTRACE` restores
/// the default report for debugging. Device builds (`profile.device`, `panic = "abort"`)
/// cannot contain a panic, so there the hook prints the `error:` line before the abort.
fn quiet_panics() {
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        std::panic::set_hook(Box::new(|info| {
            if cfg!(panic = "abort") {
                // `info` shows the message and where it was raised, on one line here
                eprintln!(
                    "error: internal error: {}",
                    info.to_string().replace('\n', " ")
                );
            } else {
                log::debug!("panic: {info}");
            }
        }));
    }
}

/// A clap value parser for thresholds: a number in [0, 1] (NaN and out-of-range values are
/// refused, not silently turned into "keep everything" or "keep nothing").
pub fn unit_interval(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("must be in [0, 1], got {s}"))
    }
}

/// A clap value parser for rates: a finite number above 0.
pub fn positive_number(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err(format!("must be a number above 0, got {s}")),
        Err(_) => Err(format!("'{s}' is not a number")),
    }
}

/// An error chain on one line, control characters (from corrupt files) escaped. Typed errors
/// that already print their cause (`cannot read X: <io error>`) are not followed by that cause
/// a second time.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if text.ends_with(&msg) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&msg);
    }
    text.chars()
        .flat_map(|c| match c {
            '\n' => " ".chars().collect::<Vec<_>>(),
            c if c.is_control() => c.escape_default().collect(),
            c => vec![c],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_checked() {
        assert_eq!(unit_interval("0.25"), Ok(0.25));
        assert_eq!(unit_interval("1"), Ok(1.0));
        assert_eq!(unit_interval("0"), Ok(0.0));
        for bad in ["nan", "NaN", "2", "-0.1", "inf", "x", ""] {
            assert!(unit_interval(bad).is_err(), "{bad}");
        }
        assert_eq!(positive_number("12.5"), Ok(12.5));
        for bad in ["0", "-1", "nan", "inf", "x"] {
            assert!(positive_number(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_causes_are_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        #[derive(Debug, thiserror::Error)]
        #[error("cannot read x: {source}")]
        struct Typed {
            source: std::io::Error,
        }
        let e = anyhow::Error::new(Typed { source: io }).context("loading model");
        assert_eq!(one_line(&e), "loading model: cannot read x: gone");
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&plain), "outer: inner");
    }
}
