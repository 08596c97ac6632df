//! Request routing; one thread per request.

use super::{event_json, metrics, Shared};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tiny_http::{Header, Method, Request, Response, Server};

/// More concurrent requests than this get 503 (a bound on threads).
const MAX_REQUESTS: usize = 64;
/// SSE comment sent when no event came for this long (finds dead clients).
const KEEPALIVE: Duration = Duration::from_secs(10);

const PAGE: &str = include_str!("page.html");

pub(super) fn serve(server: Server, shared: Arc<Shared>) {
    let active = Arc::new(AtomicUsize::new(0));
    while !shared.stopping.load(Ordering::Relaxed) {
        let req = match server.recv_timeout(Duration::from_millis(500)) {
            Ok(Some(r)) => r,
            Ok(None) => continue,
            Err(e) => {
                log::warn!("http: {e}");
                continue;
            }
        };
        if active.load(Ordering::Relaxed) >= MAX_REQUESTS {
            let _ = req.respond(text(503, "too many clients\n"));
            continue;
        }
        active.fetch_add(1, Ordering::Relaxed);
        let (shared, active) = (shared.clone(), active.clone());
        let spawned = std::thread::Builder::new()
            .name("http-client".into())
            .spawn(move || {
                handle(req, &shared);
                active.fetch_sub(1, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            log::warn!("http: cannot start a client thread: {e}");
        }
    }
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k.as_bytes(), v.as_bytes()).expect("valid header")
}

fn text(code: u16, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_string(body)
        .with_status_code(code)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}

fn authorized(req: &Request, token: &str) -> bool {
    let bearer = req.headers().iter().any(|h| {
        h.field.equiv("Authorization")
            && h.value
                .as_str()
                .strip_prefix("Bearer ")
                .is_some_and(|t| t.trim() == token)
    });
    let query = req
        .url()
        .split_once('?')
        .map(|(_, q)| {
            q.split('&')
                .any(|p| p.strip_prefix("token=") == Some(token))
        })
        .unwrap_or(false);
    bearer || query
}

fn handle(req: Request, shared: &Shared) {
    let path = req.url().split('?').next().unwrap_or("").to_string();
    if *req.method() != Method::Get && *req.method() != Method::Head {
        let _ = req.respond(text(405, "only GET\n"));
        return;
    }
    if path == "/health" {
        let _ = req.respond(text(200, "ok\n"));
        return;
    }
    if let Some(t) = &shared.token {
        if !authorized(&req, t) {
            let _ = req.respond(
                text(
                    401,
                    "unauthorized: send 'Authorization: Bearer TOKEN' or ?token=TOKEN\n",
                )
                .with_header(header("WWW-Authenticate", "Bearer")),
            );
            return;
        }
    }
    let res = match path.as_str() {
        "/" | "/index.html" => req.respond(
            Response::from_string(PAGE)
                .with_header(header("Content-Type", "text/html; charset=utf-8")),
        ),
        "/api/detections" => {
            let body = match &*shared.latest.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(r) => event_json(r),
                None => r#"{"seq":null,"detections":[]}"#.to_string(),
            };
            req.respond(
                Response::from_string(body)
                    .with_header(header("Content-Type", "application/json"))
                    .with_header(header("Cache-Control", "no-store")),
            )
        }
        "/metrics" => {
            let stats = shared
                .stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            req.respond(
                Response::from_string(metrics::render(&stats, shared))
                    .with_header(header("Content-Type", "text/plain; version=0.0.4")),
            )
        }
        "/stream.mjpg" => stream_mjpeg(req, shared),
        "/events" => stream_events(req, shared),
        _ => req.respond(text(404, "not found\n")),
    };
    if let Err(e) = res {
        log::debug!("http {path}: {e}");
    }
}

/// Counts a client while alive.
struct ClientGuard<'a>(&'a AtomicUsize);
impl<'a> ClientGuard<'a> {
    fn new(c: &'a AtomicUsize) -> Self {
        c.fetch_add(1, Ordering::Relaxed);
        ClientGuard(c)
    }
}
impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

const BOUNDARY: &str = "speckframe";

fn stream_mjpeg(req: Request, shared: &Shared) -> std::io::Result<()> {
    let _client = ClientGuard::new(&shared.stream_clients);
    let mut w = req.into_writer();
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    )?;
    w.flush()?;
    let mut last = 0;
    loop {
        let b = shared.jpeg.wait_after(last, Duration::from_secs(1));
        if b.closed {
            return Ok(());
        }
        // Only the newest frame matters to a viewer.
        let Some((seq, jpg)) = b.items.last().cloned() else {
            continue;
        };
        last = seq;
        write!(
            w,
            "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
            jpg.len()
        )?;
        w.write_all(&jpg)?;
        w.write_all(b"\r\n")?;
        w.flush()?;
    }
}

fn stream_events(req: Request, shared: &Shared) -> std::io::Result<()> {
    let _client = ClientGuard::new(&shared.event_clients);
    let mut w = req.into_writer();
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n: speck events\n\n"
    )?;
    w.flush()?;
    let mut last = shared.events.latest().map(|(s, _)| s).unwrap_or(0);
    loop {
        let b = shared.events.wait_after(last, KEEPALIVE);
        if b.closed {
            return Ok(());
        }
        if b.missed > 0 {
            shared.missed_events.fetch_add(b.missed, Ordering::Relaxed);
        }
        if b.items.is_empty() {
            w.write_all(b": keepalive\n\n")?;
        }
        for (seq, e) in &b.items {
            last = *seq;
            write!(w, "id: {seq}\ndata: {e}\n\n")?;
        }
        w.flush()?;
    }
}
