//! `--mqtt mqtt://host:port/topic`: object events (see [`events`]) published with
//! `rumqttc`'s blocking client. Publishing only queues (`try_publish`); the connection runs
//! on its own thread and reconnects with backoff, so a missing broker never stalls frames.

pub mod events;

use crate::pipeline::{FrameResult, Sink, Summary};
use events::{Tracker, TrackerOptions};
use rumqttc::{Client, Connection, MqttOptions, QoS};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Errors of `--mqtt`.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The URL cannot be used.
    #[error("bad MQTT URL '{0}': expected mqtt://host[:port][/topic]")]
    BadUrl(String),
}

/// Where to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct MqttTarget {
    /// broker host
    pub host: String,
    /// broker port
    pub port: u16,
    /// topic of the events
    pub topic: String,
}

impl MqttTarget {
    /// Parse `mqtt://host[:port][/topic]` (port 1883, topic `speck/events` by default).
    pub fn parse(url: &str) -> Result<MqttTarget, MqttError> {
        let bad = || MqttError::BadUrl(url.into());
        let rest = url.strip_prefix("mqtt://").ok_or_else(bad)?;
        let (hostport, topic) = rest.split_once('/').unwrap_or((rest, ""));
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| bad())?),
            None => (hostport, 1883),
        };
        if host.is_empty() || topic.contains(['+', '#']) {
            return Err(bad());
        }
        Ok(MqttTarget {
            host: host.into(),
            port,
            topic: if topic.is_empty() {
                "speck/events".into()
            } else {
                topic.into()
            },
        })
    }
}

/// The MQTT sink.
pub struct MqttSink {
    client: Client,
    topic: String,
    tracker: Tracker,
    dropped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    connection: Option<std::thread::JoinHandle<()>>,
}

impl MqttSink {
    /// Start the client (the connection is made in the background).
    pub fn start(target: &MqttTarget, camera: &str) -> MqttSink {
        let id = format!("speck-{}", std::process::id());
        let mut opts = MqttOptions::new(id, target.host.clone(), target.port);
        opts.set_keep_alive(Duration::from_secs(30));
        let (client, connection) = Client::new(opts, 256);
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let stop = stop.clone();
            let name = format!("{}:{}", target.host, target.port);
            std::thread::Builder::new()
                .name("mqtt".into())
                .spawn(move || drive(connection, &stop, &name))
                .ok()
        };
        MqttSink {
            client,
            topic: target.topic.clone(),
            tracker: Tracker::new(TrackerOptions {
                camera: camera.into(),
                ..Default::default()
            }),
            dropped: Arc::new(AtomicU64::new(0)),
            stop,
            connection: handle,
        }
    }

    fn send(&mut self, events: Vec<events::Event>) {
        for e in events {
            let Ok(payload) = serde_json::to_vec(&e) else {
                continue;
            };
            if self
                .client
                .try_publish(&self.topic, QoS::AtLeastOnce, false, payload)
                .is_err()
            {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Poll the connection (this is what sends and reconnects); log failures with backoff.
fn drive(mut connection: Connection, stop: &AtomicBool, name: &str) {
    let mut backoff = Duration::from_millis(250);
    let mut connected = false;
    for n in connection.iter() {
        match n {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                log::info!("mqtt: connected to {name}");
                connected = true;
                backoff = Duration::from_millis(250);
            }
            Ok(rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(e) => {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if connected {
                    log::warn!("mqtt: {name}: {e}; reconnecting");
                } else {
                    log::warn!(
                        "mqtt: cannot reach {name}: {e}; retrying in {:.1} s",
                        backoff.as_secs_f32()
                    );
                }
                connected = false;
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

impl Sink for MqttSink {
    fn name(&self) -> String {
        format!("mqtt topic {}", self.topic)
    }

    fn publish(&mut self, r: &Arc<FrameResult>) {
        let events = self.tracker.update(r.frame_time, &r.detections);
        self.send(events);
    }

    fn finish(&mut self, _summary: &Summary) {
        let events = self.tracker.finish();
        self.send(events);
        // Let queued events go out, then disconnect (bounded wait).
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.client.disconnect();
        if let Some(h) = self.connection.take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(3);
            while !h.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let dropped = self.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            log::warn!("mqtt: {dropped} events dropped (broker unreachable or too slow)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            MqttTarget::parse("mqtt://10.0.0.2:1884/site/cam1").unwrap(),
            MqttTarget {
                host: "10.0.0.2".into(),
                port: 1884,
                topic: "site/cam1".into()
            }
        );
        assert_eq!(
            MqttTarget::parse("mqtt://broker").unwrap().topic,
            "speck/events"
        );
        for bad in ["http://x", "mqtt://", "mqtt://h:99999/t", "mqtt://h/a/#"] {
            assert!(MqttTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
