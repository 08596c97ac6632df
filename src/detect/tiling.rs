//! Sliced inference (SAHI-style) for objects a few pixels tall: the frame is covered by
//! overlapping tiles, each tile is letterboxed to the model input straight from the frame
//! (no crop copies), detections are mapped back to frame coordinates, an optional full-frame
//! pass is added, and everything is merged by class-aware NMS (IoU) or greedy NMM
//! (intersection over the smaller box).
//!
//! Tiles are preprocessed on rayon's threads, one buffer per tile (kept in the [`Detector`]
//! and reused across frames), then go through the engine together
//! ([`crate::Engine::run_batch`]): each worker thread runs whole tiles in its own activation
//! arena over the shared weights, which scales far better than splitting one small tile's
//! kernels over threads. The engine's plan is for a static `[1, 3, H, W]` input (the shipped
//! models export batch 1 with constant reshapes), so a batch is many runs at once rather
//! than one run with a batch dimension.

use super::detector::check_frame;
use super::{nms, preprocess_region, Detection, Detector, Letterbox, MergeKind, RgbFrame};
use anyhow::Result;
use rayon::prelude::*;

/// Errors in tiling settings.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TilingError {
    /// A tile side of zero.
    #[error("tile size must be positive, got {0}x{1}")]
    EmptyTile(usize, usize),
    /// Overlap outside [0, 1).
    #[error("tile overlap must be in [0, 1), got {0}")]
    BadOverlap(f32),
}

/// Tiling settings.
#[derive(Clone, Debug, PartialEq)]
pub struct TileOptions {
    /// Tile width and height in frame pixels.
    pub tile: (usize, usize),
    /// Fraction of a tile shared with its neighbour, in [0, 1) (SAHI uses 0.2).
    pub overlap: f32,
    /// Also run the whole frame (catches objects larger than a tile).
    pub full_frame: bool,
    /// How detections of overlapping tiles are merged.
    pub merge: MergeKind,
    /// IoU (NMS) or intersection-over-smaller (NMM) threshold of the merge.
    pub merge_threshold: f32,
}

impl Default for TileOptions {
    fn default() -> Self {
        TileOptions {
            tile: (512, 512),
            overlap: 0.2,
            full_frame: false,
            merge: MergeKind::NmsIou,
            merge_threshold: 0.5,
        }
    }
}

/// One tile: `[x, y)` to `[x + w, y + h)` in frame pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tile {
    /// left
    pub x: usize,
    /// top
    pub y: usize,
    /// width
    pub w: usize,
    /// height
    pub h: usize,
}

/// Tile starts along one axis: step `floor(tile * (1 - overlap))` (at least 1), the last tile
/// aligned to the far edge. A frame no larger than the tile gets one tile.
fn axis_starts(size: usize, tile: usize, overlap: f32) -> Vec<usize> {
    if size <= tile {
        return vec![0];
    }
    let step = ((tile as f64 * (1.0 - overlap as f64)).floor() as usize).max(1);
    let mut v: Vec<usize> = (0..)
        .map(|i| i * step)
        .take_while(|&s| s + tile < size)
        .collect();
    v.push(size - tile);
    v
}

/// The tiles covering a `width x height` frame, row by row. Tiles are `tile` sized (clipped
/// to the frame when it is smaller); neighbours share at least `overlap` of a tile.
pub fn tile_grid(
    width: usize,
    height: usize,
    tile: (usize, usize),
    overlap: f32,
) -> Result<Vec<Tile>, TilingError> {
    if tile.0 == 0 || tile.1 == 0 {
        return Err(TilingError::EmptyTile(tile.0, tile.1));
    }
    if !(0.0..1.0).contains(&overlap) {
        return Err(TilingError::BadOverlap(overlap));
    }
    let (tw, th) = (tile.0.min(width), tile.1.min(height));
    let xs = axis_starts(width, tw, overlap);
    let ys = axis_starts(height, th, overlap);
    Ok(ys
        .iter()
        .flat_map(|&y| xs.iter().map(move |&x| Tile { x, y, w: tw, h: th }))
        .collect())
}

impl Detector {
    /// Detect objects tile by tile (see the module docs), merged into frame coordinates.
    /// Each tile's detections first go through the detector's own NMS
    /// ([`super::DetectorOptions`]); the merge across tiles uses `opts`.
    pub fn detect_tiled(&mut self, frame: RgbFrame, opts: &TileOptions) -> Result<Vec<Detection>> {
        check_frame(&frame)?;
        let tiles = tile_grid(frame.width, frame.height, opts.tile, opts.overlap)?;
        let (iw, ih) = self.metadata().input_size;
        let mut bufs = std::mem::take(&mut self.tile_inputs);
        bufs.resize_with(tiles.len().max(bufs.len()), Vec::new);
        let meta = self.metadata().clone();
        let t0 = std::time::Instant::now();
        let lbs: Vec<Letterbox> = bufs[..tiles.len()]
            .par_iter_mut()
            .zip(tiles.par_iter())
            .map(|(buf, t)| {
                buf.resize(3 * iw * ih, 0.0);
                preprocess_region(frame, [t.x, t.y, t.w, t.h], &meta, buf)
            })
            .collect();
        self.times.preprocess += t0.elapsed();
        let raws = self.infer_raw_batch(&mut bufs[..tiles.len()]);
        self.tile_inputs = bufs;
        let mut all = vec![];
        for ((t, lb), raw) in tiles.iter().zip(&lbs).zip(raws?) {
            let dets = self.to_detections(raw, lb, [t.x, t.y, t.w, t.h]);
            all.extend(nms(dets, self.options.iou, self.options.merge));
        }
        if opts.full_frame {
            all.extend(self.detect(frame)?);
        }
        let mut kept = nms(all, opts.merge_threshold, opts.merge);
        kept.truncate(self.options.max_detections);
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::preprocess;
    use crate::model::{Metadata, OutputFormat, ResizeKind};

    #[test]
    fn grid_covers_every_pixel_with_the_overlap() {
        for &(w, h, tw, th, ov) in &[
            (1280, 720, 512, 512, 0.2f32),
            (1280, 720, 640, 512, 0.25),
            (1000, 999, 333, 100, 0.0),
            (100, 50, 512, 512, 0.2),
            (513, 512, 512, 512, 0.5),
            (37, 23, 8, 5, 0.9),
        ] {
            let tiles = tile_grid(w, h, (tw, th), ov).unwrap();
            let mut count = vec![0u32; w * h];
            for t in &tiles {
                assert!(t.x + t.w <= w && t.y + t.h <= h, "{t:?} inside {w}x{h}");
                assert_eq!((t.w, t.h), (tw.min(w), th.min(h)));
                for y in t.y..t.y + t.h {
                    for x in t.x..t.x + t.w {
                        count[y * w + x] += 1;
                    }
                }
            }
            assert!(
                count.iter().all(|&c| c > 0),
                "{w}x{h} tile {tw}x{th}: a pixel is uncovered"
            );
            // Neighbours along each axis overlap by at least `ov` of a tile.
            let min_overlap = |starts: Vec<usize>, t: usize| {
                for p in starts.windows(2) {
                    assert!(p[1] > p[0]);
                    assert!(
                        (p[0] + t - p[1]) as f32 >= ov * t as f32 - 1.0,
                        "{starts:?} tile {t} overlap {ov}"
                    );
                }
            };
            let mut xs: Vec<usize> = tiles.iter().map(|t| t.x).collect();
            xs.sort();
            xs.dedup();
            let mut ys: Vec<usize> = tiles.iter().map(|t| t.y).collect();
            ys.sort();
            ys.dedup();
            assert_eq!(
                *xs.last().unwrap() + tw.min(w),
                w,
                "last tile aligned to the right edge"
            );
            assert_eq!(
                *ys.last().unwrap() + th.min(h),
                h,
                "last tile aligned to the bottom edge"
            );
            min_overlap(xs, tw.min(w));
            min_overlap(ys, th.min(h));
        }
        assert_eq!(tile_grid(1280, 720, (512, 512), 0.2).unwrap().len(), 6);
        assert_eq!(
            tile_grid(10, 10, (0, 4), 0.2),
            Err(TilingError::EmptyTile(0, 4))
        );
        assert_eq!(
            tile_grid(10, 10, (4, 4), 1.0),
            Err(TilingError::BadOverlap(1.0))
        );
    }

    fn meta(w: usize, h: usize) -> Metadata {
        Metadata {
            input_size: (w, h),
            mean: [0.0; 3],
            std: [1.0; 3],
            resize: ResizeKind::Letterbox,
            class_names: vec!["person".into()],
            output_format: OutputFormat::SpeckCenternet,
            strides: vec![4],
            tile: None,
        }
    }

    #[test]
    fn region_preprocessing_equals_a_cropped_copy() {
        let (w, h) = (97, 61);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let frame = RgbFrame {
            data: &data,
            width: w,
            height: h,
        };
        let region = [13, 7, 40, 30];
        let mut crop = vec![];
        for y in region[1]..region[1] + region[3] {
            crop.extend_from_slice(
                &data[(y * w + region[0]) * 3..(y * w + region[0] + region[2]) * 3],
            );
        }
        let m = meta(32, 32);
        let (mut a, mut b) = (vec![0.0; 3 * 32 * 32], vec![0.0; 3 * 32 * 32]);
        let la = preprocess_region(frame, region, &m, &mut a);
        let lb = preprocess(
            RgbFrame {
                data: &crop,
                width: 40,
                height: 30,
            },
            &m,
            &mut b,
        );
        assert_eq!(la, lb);
        assert_eq!(a, b);
    }

    #[test]
    fn tile_boxes_map_back_exactly() {
        // A 512x512 tile at (768, 208) of a 1280x720 frame, model input 256x256: scale 0.5, no
        // padding. A box at input (10, 20)-(14, 30) is frame (768+20, 208+40)-(768+28, 208+60).
        let lb = Letterbox {
            scale_x: 0.5,
            scale_y: 0.5,
            pad_x: 0.0,
            pad_y: 0.0,
        };
        let t = lb.to_frame([10.0, 20.0, 14.0, 30.0], 512, 512);
        let b = [t[0] + 768.0, t[1] + 208.0, t[2] + 768.0, t[3] + 208.0];
        assert_eq!(b, [788.0, 248.0, 796.0, 268.0]);
        // Letterboxed tile (last row of a frame whose height is not a tile multiple): a
        // 512x300 tile into 256x256 -> scale 0.5, pad_y (256 - 150) / 2 = 53.
        let data = vec![0u8; 600 * 300 * 3];
        let mut out = vec![0.0; 3 * 256 * 256];
        let frame = RgbFrame {
            data: &data,
            width: 600,
            height: 300,
        };
        let lb = preprocess_region(frame, [88, 0, 512, 300], &meta(256, 256), &mut out);
        assert_eq!((lb.scale_x, lb.pad_x, lb.pad_y), (0.5, 0.0, 53.0));
        assert_eq!(
            lb.to_frame([0.0, 53.0, 256.0, 203.0], 512, 300),
            [0.0, 0.0, 512.0, 300.0]
        );
    }

    fn d(b: [f32; 4], s: f32) -> Detection {
        Detection {
            bbox: b,
            score: s,
            label: "person".into(),
            class_id: 0,
        }
    }

    #[test]
    fn merging_across_tiles() {
        // The same person seen by two tiles, cut by the tile edge in one of them.
        let whole = d([500.0, 100.0, 506.0, 114.0], 0.8);
        let cut = d([500.0, 100.0, 503.0, 114.0], 0.6);
        let k = nms(vec![whole.clone(), cut.clone()], 0.5, MergeKind::NmsIou);
        assert_eq!(
            k.len(),
            2,
            "IoU exactly 0.5 is not above the threshold 0.5: both kept"
        );
        let k = nms(vec![whole.clone(), cut.clone()], 0.4, MergeKind::NmsIou);
        assert_eq!(k, vec![whole.clone()]);
        // NMM on intersection over the smaller box: the cut box lies inside -> merged.
        let k = nms(
            vec![cut.clone(), d([501.0, 101.0, 507.0, 115.0], 0.9)],
            0.5,
            MergeKind::NmmIos,
        );
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].bbox, [500.0, 100.0, 507.0, 115.0]);
        assert_eq!(k[0].score, 0.9);
    }
}
