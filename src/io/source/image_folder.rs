//! A folder of images, read in name order (optionally looped).

use super::{Frame, FrameSource, SourceError};
use std::path::{Path, PathBuf};

const IMAGE_EXTS: &[&str] = &["jpg", "jpeg", "png", "bmp"];

/// Frames from image files.
pub struct ImageFolderSource {
    files: Vec<PathBuf>,
    next: usize,
    looped: bool,
    name: String,
}

impl ImageFolderSource {
    /// List the folder's images.
    pub fn open(dir: &Path, looped: bool) -> Result<ImageFolderSource, SourceError> {
        let open_err = |why: String| SourceError::Open {
            what: dir.display().to_string(),
            why,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| open_err(e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(open_err(format!(
                "holds no images ({})",
                IMAGE_EXTS.join(", ")
            )));
        }
        Ok(ImageFolderSource {
            files,
            next: 0,
            looped,
            name: dir.display().to_string(),
        })
    }
}

impl FrameSource for ImageFolderSource {
    fn read_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        if self.next == self.files.len() {
            if !self.looped {
                return Ok(None);
            }
            self.next = 0;
        }
        let path = &self.files[self.next];
        self.next += 1;
        let img = crate::io::read_image(path).map_err(|e| SourceError::Read {
            what: path.display().to_string(),
            why: e.to_string(),
        })?;
        let img = img.into_rgb8();
        let (w, h) = (img.width() as usize, img.height() as usize);
        Ok(Some(Frame::new(img.into_raw(), w, h)))
    }

    fn describe(&self) -> String {
        self.name.clone()
    }
}
