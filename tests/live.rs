//! `speck run` end to end: pipe sources that die and come back, the HTTP endpoints under a
//! stalled stream client, MQTT events at a real mosquitto, and the page in headless
//! Chromium. Sources are synthetic (ffmpeg's lavfi or `head -c`), the model is the tiny
//! red-patch detector in tests/data (milliseconds per frame in debug builds).

mod common;
use common::root;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MODEL: &str = "tests/data/red_detector.onnx";
/// The colour `speck::draw::class_color(0)` gives class 0.
const BOX_RGB: [u8; 3] = [255, 56, 56];

fn speck() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_speck"));
    c.current_dir(root())
        .args(["run", "--model", MODEL, "--stats-every", "0"]);
    c
}

/// Tools a test needs: missing ones skip it, except under CI where they must be there.
fn have(tools: &[&str]) -> bool {
    common::have_tools(tools, "see .ci/run's apt block")
}

/// Wait for a child with a deadline (a hang is a failure, not a stuck test run).
fn finish(mut child: Child, limit: Duration) -> Output {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    panic!(
        "speck did not finish in {limit:?}; stderr: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn summary(o: &Output) -> serde_json::Value {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "speck failed: {err}");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("summary JSON: {e}; stderr {err}"))
}

/// A `-re` (real-time) lavfi source: gray with a red square, `w`x`h`.
fn lavfi_source(w: usize, h: usize) -> Vec<String> {
    vec![
        "--source".into(),
        format!(
            "pipe:ffmpeg -v error -re -f lavfi -i color=c=gray:s={w}x{h}:r=30,drawbox=x={}:y={}:w=40:h=40:color=red:t=fill -f rawvideo -pix_fmt rgb24 -",
            w / 2 - 20,
            h / 2 - 20
        ),
        "--pipe-format".into(),
        "rgb24".into(),
        "--pipe-size".into(),
        format!("{w}x{h}"),
    ]
}

/// Start `speck run ... --serve 127.0.0.1:0` and return it with its port.
fn serve(args: &[String], token: &str) -> (Child, u16) {
    let mut child = speck()
        .args(args)
        .args(["--serve", "127.0.0.1:0", "--token", token, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        line.clear();
        assert!(Instant::now() < deadline, "no 'serving on' line");
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("speck exited before serving");
        }
        if let Some(rest) = line.trim().strip_prefix("serving on http://127.0.0.1:") {
            break rest.trim_end_matches('/').parse().unwrap();
        }
    };
    // Keep draining stderr so the child never blocks on it.
    std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
    (child, port)
}

/// A plain HTTP/1.0 GET; returns (status, headers+body as text).
fn get(port: u16, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = auth
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n{auth}\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, out)
}

fn body(resp: &str) -> &str {
    resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("")
}

#[test]
fn pipe_command_that_dies_is_reopened() {
    if !have(&["head"]) {
        return;
    }
    // Each run of the command gives two 32x24 RGB frames and a truncated third, then exits.
    let o = finish(
        speck()
            .args([
                "--source",
                "pipe:head -c 5000 /dev/zero",
                "--pipe-format",
                "rgb24",
            ])
            .args(["--pipe-size", "32x24", "--max-frames", "5", "--json"])
            .output_child(),
        Duration::from_secs(60),
    );
    let s = summary(&o);
    assert_eq!(s["frames"], 5);
    assert_eq!(s["ended_by"], "max-frames");
    assert!(s["reconnects"].as_u64().unwrap() >= 1, "{s}");
    assert!(
        s["source_errors"].as_u64().unwrap() >= 1,
        "truncated frame counted: {s}"
    );
}

trait OutputChild {
    fn output_child(&mut self) -> Child;
}
impl OutputChild for Command {
    fn output_child(&mut self) -> Child {
        self.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn stdin_pipe_reads_to_the_end() {
    // Three 16x16 I420 frames on stdin; the source ends with the input.
    let mut child = speck()
        .args([
            "--source",
            "pipe:",
            "--pipe-format",
            "i420",
            "--pipe-size",
            "16x16",
            "--json",
        ])
        .stdin(Stdio::piped())
        .output_child();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&[128u8; 3 * 384])
        .unwrap();
    let s = summary(&finish(child, Duration::from_secs(60)));
    assert_eq!(s["ended_by"], "end of source");
    assert_eq!(
        s["frames"].as_u64().unwrap() + s["dropped"].as_u64().unwrap(),
        3,
        "{s}"
    );
}

#[test]
fn missing_camera_is_a_clear_error() {
    let o = speck().args(["--source", "/dev/video97"]).output().unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(e.starts_with("error: cannot open /dev/video97"), "{e}");
    let o = speck()
        .args(["--source", "pipe:cat", "--pipe-format", "yuyv"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("--pipe-size"));
}

#[test]
fn folder_and_video_file_sources() {
    if !have(&["ffmpeg", "ffprobe"]) {
        return;
    }
    let o = speck()
        .args([
            "--source",
            "examples/data/clip.mp4",
            "--max-frames",
            "10",
            "--json",
        ])
        .output()
        .unwrap();
    let s = summary(&o);
    assert_eq!(
        (s["frames"].as_u64(), s["dropped"].as_u64()),
        (Some(10), Some(0))
    );
    let o = speck()
        .args([
            "--source",
            "examples/data/images",
            "--max-frames",
            "3",
            "--json",
        ])
        .output()
        .unwrap();
    assert_eq!(summary(&o)["frames"], 3);
}

#[test]
fn http_endpoints_answer_while_a_client_stalls_the_stream() {
    if !have(&["ffmpeg"]) {
        return;
    }
    let mut args = lavfi_source(640, 480);
    args.extend(["--max-frames".into(), "240".into()]);
    let (child, port) = serve(&args, "sekrit");

    // A client that asks for the stream and then reads almost nothing.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(slow, "GET /stream.mjpg?token=sekrit HTTP/1.0\r\n\r\n").unwrap();
    let mut first = [0u8; 256];
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let n = slow.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).contains("multipart/x-mixed-replace"));
    std::thread::sleep(Duration::from_secs(2));

    assert_eq!(get(port, "/health", None).0, 200);
    assert_eq!(get(port, "/api/detections", None).0, 401);
    assert_eq!(get(port, "/api/detections", Some("wrong")).0, 401);
    let (code, a) = get(port, "/api/detections", Some("sekrit"));
    assert_eq!(code, 200, "{a}");
    let j: serde_json::Value = serde_json::from_str(body(&a)).unwrap();
    let dets = j["detections"].as_array().unwrap();
    assert_eq!(dets.len(), 1, "{j}");
    assert_eq!(dets[0]["label"], "red");
    let b = dets[0]["bbox"].as_array().unwrap();
    let cx = (b[0].as_f64().unwrap() + b[2].as_f64().unwrap()) / 2.0;
    assert!(
        (cx - 320.0).abs() < 20.0,
        "box centred on the red square: {b:?}"
    );
    let seq0 = j["seq"].as_u64().unwrap();

    let (code, page) = get(port, "/?token=sekrit", None);
    assert_eq!(code, 200);
    assert!(page.contains("<img") && page.contains("EventSource"));
    let (code, m) = get(port, "/metrics", Some("sekrit"));
    assert_eq!(code, 200);
    assert!(
        m.contains("speck_frames_total") && m.contains("speck_http_clients{endpoint=\"stream\"} 1"),
        "{m}"
    );

    // A normal stream client gets whole JPEG parts.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /stream.mjpg HTTP/1.0\r\nAuthorization: Bearer sekrit\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut len = None;
    let mut line = String::new();
    while len.is_none() {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended early");
        len = line
            .strip_prefix("Content-Length: ")
            .map(|v| v.trim().parse::<usize>().unwrap());
    }
    r.read_line(&mut line).unwrap();
    let mut jpg = vec![0u8; len.unwrap()];
    r.read_exact(&mut jpg).unwrap();
    let img = image::load_from_memory(&jpg).unwrap();
    assert_eq!((img.width(), img.height()), (640, 480));

    // Server-Sent Events: one JSON per frame.
    let mut e = TcpStream::connect(("127.0.0.1", port)).unwrap();
    e.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(e, "GET /events?token=sekrit HTTP/1.0\r\n\r\n").unwrap();
    let mut r = BufReader::new(e);
    let data = loop {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0);
        if let Some(d) = line.strip_prefix("data: ") {
            break d.to_string();
        }
    };
    let ev: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert!(
        ev["seq"].as_u64().unwrap() > seq0,
        "frames keep flowing past the stalled client"
    );
    assert_eq!(ev["detections"][0]["label"], "red");

    let s = summary(&finish(child, Duration::from_secs(60)));
    assert_eq!(s["frames"], 240);
    assert_eq!(s["source_errors"], 0);
    drop(slow);
}

#[test]
fn mqtt_events_arrive_at_a_real_broker() {
    if !have(&["ffmpeg", "mosquitto", "mosquitto_sub"]) {
        return;
    }
    let port = common::free_port();
    let mut broker = Command::new("mosquitto")
        .args(["-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sub = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "site/cam1",
            "-C",
            "2",
            "-W",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut args = lavfi_source(320, 240);
    args.extend([
        "--max-frames".into(),
        "45".into(),
        "--json".into(),
        "--camera".into(),
        "gate".into(),
    ]);
    let o = finish(
        speck()
            .args(&args)
            .args(["--mqtt", &format!("mqtt://127.0.0.1:{port}/site/cam1")])
            .output_child(),
        Duration::from_secs(60),
    );
    summary(&o);
    let got = finish(sub, Duration::from_secs(40));
    let _ = broker.kill();
    let _ = broker.wait();
    let text = String::from_utf8_lossy(&got.stdout);
    let events: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    assert_eq!(events[0]["type"], "new");
    let after = &events[0]["after"];
    assert_eq!(
        (after["label"].as_str(), after["camera"].as_str()),
        (Some("red"), Some("gate"))
    );
    assert_eq!(after["box"].as_array().unwrap().len(), 4);
    assert!(after["frame_time"].as_f64().unwrap() > 1.6e9);
    assert!(["update", "end"].contains(&events[1]["type"].as_str().unwrap()));
    assert_eq!(events[1]["after"]["id"], after["id"], "same object");
}

#[test]
fn page_in_headless_chromium_shows_the_stream_with_boxes() {
    if !have(&["ffmpeg", "chromium"]) {
        return;
    }
    let mut args = lavfi_source(640, 480);
    args.extend(["--max-frames".into(), "150".into()]);
    let (child, port) = serve(&args, "tk");
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("page.png");
    // Chromium returns once the stream ends (the run stops after 150 frames, about 5 s);
    // the image keeps the last frame.
    let o = finish(
        Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.path().join("profile").display()
            ))
            .arg(format!("--screenshot={}", shot.display()))
            .args(["--window-size=1000,600", "--virtual-time-budget=4000"])
            .arg(format!("http://127.0.0.1:{port}/?token=tk"))
            .output_child(),
        Duration::from_secs(90),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    summary(&finish(child, Duration::from_secs(30)));
    let img = image::open(&shot).unwrap().to_rgb8();
    let near = |p: &image::Rgb<u8>, c: [u8; 3], tol: u8| {
        p.0.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= tol)
    };
    let gray = img
        .pixels()
        .filter(|p| near(p, [128, 128, 128], 12))
        .count();
    let boxes = img.pixels().filter(|p| near(p, BOX_RGB, 30)).count();
    assert!(
        gray > 50_000,
        "the stream is on the page ({gray} gray pixels)"
    );
    assert!(
        boxes > 200,
        "box outlines visible ({boxes} pixels of the box colour)"
    );
}
