//! `--tile WxH --overlap R --full-frame --merge nms|nmm --merge-threshold T`, shared by the
//! commands that run a detector.

use anyhow::{bail, Result};
use speck::detect::{MergeKind, TileOptions};

/// Cross-tile merge.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Class-aware NMS on IoU.
    Nms,
    /// Greedy non-maximum merging on intersection over the smaller box (SAHI's default).
    Nmm,
}

/// Tiling flags.
#[derive(clap::Args, Debug, Clone)]
pub struct TileArgs {
    /// Sliced inference: tile size in frame pixels, e.g. 512x512 (default: the model's `tile`
    /// metadata if it has one, else the whole frame).
    #[arg(long, value_name = "WxH", conflicts_with = "no_tile")]
    tile: Option<String>,
    /// Run on whole frames even when the model asks for tiles.
    #[arg(long)]
    no_tile: bool,
    /// Fraction of a tile shared with its neighbour (with --tile).
    #[arg(long, default_value_t = 0.2, value_name = "R")]
    overlap: f32,
    /// With --tile: also run the whole frame and merge its detections in.
    #[arg(long)]
    full_frame: bool,
    /// With --tile: how detections of overlapping tiles are merged.
    #[arg(long, value_enum, default_value_t = Merge::Nms)]
    merge: Merge,
    /// With --tile: IoU (nms) or intersection-over-smaller (nmm) threshold of the merge.
    #[arg(long, default_value_t = 0.5, value_name = "T")]
    merge_threshold: f32,
}

impl TileArgs {
    /// True when the user asked for tiling or for none explicitly.
    pub fn explicit(&self) -> bool {
        self.tile.is_some() || self.no_tile
    }

    /// The tiling settings: `--tile` if given, none with `--no-tile`, else the model's
    /// preferred tile (`model_tile`), else none.
    pub fn options(&self, model_tile: Option<(usize, usize)>) -> Result<Option<TileOptions>> {
        let given = self.tile.clone().or_else(|| {
            (!self.no_tile)
                .then(|| model_tile.map(|(w, h)| format!("{w}x{h}")))
                .flatten()
        });
        let Some(t) = &given else {
            if self.full_frame {
                bail!("--full-frame needs --tile");
            }
            return Ok(None);
        };
        let parse = || -> Option<(usize, usize)> {
            let (w, h) = t.split_once(['x', 'X'])?;
            Some((w.trim().parse().ok()?, h.trim().parse().ok()?))
        };
        let Some((w, h)) = parse().filter(|&(w, h)| w > 0 && h > 0) else {
            bail!("--tile must be WxH with positive integers, e.g. 512x512; got '{t}'");
        };
        if !(0.0..1.0).contains(&self.overlap) {
            bail!("--overlap must be in [0, 1), got {}", self.overlap);
        }
        if !(0.0..=1.0).contains(&self.merge_threshold) {
            bail!(
                "--merge-threshold must be in [0, 1], got {}",
                self.merge_threshold
            );
        }
        Ok(Some(TileOptions {
            tile: (w, h),
            overlap: self.overlap,
            full_frame: self.full_frame,
            merge: match self.merge {
                Merge::Nms => MergeKind::NmsIou,
                Merge::Nmm => MergeKind::NmmIos,
            },
            merge_threshold: self.merge_threshold,
        }))
    }
}
