//! Detection events modelled on Frigate's `frigate/events`: each tracked object gets a
//! `new` event when it first appears, `update` events while it stays (at most one per
//! `update_every`), and an `end` event when it has been gone for `end_after`. Objects are
//! tracked across frames by greedy same-label IoU matching. Schema: `docs/mqtt-events.md`.

use crate::detect::{iou, Detection};
use serde::Serialize;

/// One tracked object as it appears in events.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TrackedObject {
    /// `"<start_time>-<n>"`, unique for the run
    pub id: String,
    /// the source name given with `--camera`
    pub camera: String,
    /// time of the frame this state comes from (Unix seconds)
    pub frame_time: f64,
    /// class name
    pub label: String,
    /// score in the latest frame
    pub score: f32,
    /// best score so far
    pub top_score: f32,
    /// `[x_min, y_min, x_max, y_max]` in frame pixels
    #[serde(rename = "box")]
    pub bbox: [f32; 4],
    /// box area in pixels
    pub area: f32,
    /// first seen (Unix seconds)
    pub start_time: f64,
    /// last seen, set on `end` events
    pub end_time: Option<f64>,
    /// frames in which it was detected
    pub frames: u64,
}

/// One event.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Event {
    /// `new`, `update` or `end`
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// the state sent in this object's previous event (the same as `after` on `new`)
    pub before: TrackedObject,
    /// the state now
    pub after: TrackedObject,
}

struct Track {
    obj: TrackedObject,
    last_sent: TrackedObject,
    sent_at: f64,
}

/// Tracker settings.
#[derive(Clone, Debug)]
pub struct TrackerOptions {
    /// `camera` field of events
    pub camera: String,
    /// minimum IoU to continue a track
    pub match_iou: f32,
    /// seconds between `update` events of one object
    pub update_every: f64,
    /// seconds unseen before `end`
    pub end_after: f64,
}

impl Default for TrackerOptions {
    fn default() -> Self {
        TrackerOptions {
            camera: "speck".into(),
            match_iou: 0.3,
            update_every: 1.0,
            end_after: 1.0,
        }
    }
}

/// Turns per-frame detections into object events.
pub struct Tracker {
    opts: TrackerOptions,
    tracks: Vec<Track>,
    counter: u64,
}

impl Tracker {
    /// A tracker with no objects.
    pub fn new(opts: TrackerOptions) -> Tracker {
        Tracker {
            opts,
            tracks: vec![],
            counter: 0,
        }
    }

    /// Feed one frame's detections; returns the events it causes.
    pub fn update(&mut self, frame_time: f64, dets: &[Detection]) -> Vec<Event> {
        let mut events = vec![];
        let mut pairs: Vec<(f32, usize, usize)> = vec![];
        for (ti, t) in self.tracks.iter().enumerate() {
            for (di, d) in dets.iter().enumerate() {
                if d.label == t.obj.label {
                    let o = iou(&t.obj.bbox, &d.bbox);
                    if o >= self.opts.match_iou {
                        pairs.push((o, ti, di));
                    }
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut track_used, mut det_used) =
            (vec![false; self.tracks.len()], vec![false; dets.len()]);
        for (_, ti, di) in pairs {
            if track_used[ti] || det_used[di] {
                continue;
            }
            track_used[ti] = true;
            det_used[di] = true;
            let d = &dets[di];
            let t = &mut self.tracks[ti];
            t.obj.frame_time = frame_time;
            t.obj.score = d.score;
            t.obj.top_score = t.obj.top_score.max(d.score);
            t.obj.bbox = d.bbox;
            t.obj.area = d.area();
            t.obj.frames += 1;
            if frame_time - t.sent_at >= self.opts.update_every {
                events.push(Event {
                    kind: "update",
                    before: t.last_sent.clone(),
                    after: t.obj.clone(),
                });
                t.last_sent = t.obj.clone();
                t.sent_at = frame_time;
            }
        }
        // Tracks not seen for `end_after` end.
        let end_after = self.opts.end_after;
        let mut kept = vec![];
        for t in self.tracks.drain(..) {
            if frame_time - t.obj.frame_time >= end_after {
                events.push(end_event(t));
            } else {
                kept.push(t);
            }
        }
        self.tracks = kept;
        for (d, used) in dets.iter().zip(det_used) {
            if used {
                continue;
            }
            self.counter += 1;
            let obj = TrackedObject {
                id: format!("{frame_time:.6}-{}", self.counter),
                camera: self.opts.camera.clone(),
                frame_time,
                label: d.label.clone(),
                score: d.score,
                top_score: d.score,
                bbox: d.bbox,
                area: d.area(),
                start_time: frame_time,
                end_time: None,
                frames: 1,
            };
            events.push(Event {
                kind: "new",
                before: obj.clone(),
                after: obj.clone(),
            });
            self.tracks.push(Track {
                last_sent: obj.clone(),
                obj,
                sent_at: frame_time,
            });
        }
        events
    }

    /// End every open track (the run is over).
    pub fn finish(&mut self) -> Vec<Event> {
        self.tracks.drain(..).map(end_event).collect()
    }
}

fn end_event(t: Track) -> Event {
    let mut after = t.obj;
    after.end_time = Some(after.frame_time);
    Event {
        kind: "end",
        before: t.last_sent,
        after,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32) -> Detection {
        Detection {
            bbox: [x, 10.0, x + 10.0, 30.0],
            score: 0.8,
            label: "person".into(),
            class_id: 0,
        }
    }

    #[test]
    fn new_update_end() {
        let mut t = Tracker::new(TrackerOptions::default());
        let e = t.update(0.0, &[det(0.0)]);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].kind, "new");
        assert!(
            t.update(0.5, &[det(1.0)]).is_empty(),
            "no update within a second"
        );
        let e = t.update(1.1, &[det(2.0)]);
        assert_eq!((e.len(), e[0].kind), (1, "update"));
        assert_eq!(e[0].before.bbox[0], 0.0);
        assert_eq!(e[0].after.bbox[0], 2.0);
        assert_eq!(e[0].after.frames, 3);
        // A far-away box is another object.
        let e = t.update(1.2, &[det(2.0), det(100.0)]);
        assert_eq!(e.iter().filter(|e| e.kind == "new").count(), 1);
        let e = t.update(3.0, &[]);
        assert_eq!(e.iter().filter(|e| e.kind == "end").count(), 2);
        assert!(e.iter().all(|e| e.after.end_time == Some(1.2)));
        assert!(t.finish().is_empty());
    }
}
