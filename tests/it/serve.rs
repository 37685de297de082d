//! `odoo-db serve` against real servers: what Prometheus, a load balancer and a person
//! read from it, and that it survives what servers do to it meanwhile.
//!
//! Every test here shares one fresh harness of its own ([`fleet`]), one test at a time:
//! the heartbeat counts of the rate-limiting test must not see another process's
//! probes, and the fault tests restart the standby.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use odoo_db::cmd::sandbox::ClientFiles;
use pgsandbox::{Harness, HarnessOptions, PgServer};
use serde_json::Value;

use crate::util;

static FLEET: OnceLock<Mutex<Harness>> = OnceLock::new();

/// The serve tests' harness, initialized, for this test alone.
fn fleet() -> MutexGuard<'static, Harness> {
    let fleet = FLEET.get_or_init(|| {
        let harness = util::fresh(HarnessOptions::default());
        util::odoo_db_for(&harness).arg("init").run().success();
        Mutex::new(harness)
    });
    let guard = fleet
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let standby = guard.standby.as_ref().expect("a standby");
    // A test that failed with the standby down must not fail the next one.
    standby.start().expect("starting the standby");
    guard
}

/// The harness's config plus a `[serve]` section, in the harness directory.
fn config(harness: &Harness, name: &str, serve: &str) -> PathBuf {
    let path = harness.dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("{}\n[serve]\n{serve}\n", harness.config_toml()),
    )
    .expect("writing a config");
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `odoo-db serve`; killed when dropped.
struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start(harness: &Harness, config: &Path, args: &[&str]) -> Serve {
        Serve::start_with_env(harness, config, args, &[])
    }

    /// As [`Serve::start`], with more environment variables.
    fn start_with_env(
        harness: &Harness,
        config: &Path,
        args: &[&str],
        env: &[(&str, &Path)],
    ) -> Serve {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut command = util::odoo_db_for(harness)
            .env("ODOO_DB_CONFIG", config)
            .args(["serve", "--listen", &addr])
            .args(args);
        for (key, value) in env {
            command = command.env(key, value);
        }
        let child = command.spawn();
        let mut serve = Serve { child, addr };
        let started = Instant::now();
        while TcpStream::connect(&serve.addr).is_err() {
            if let Ok(Some(status)) = serve.child.try_wait() {
                panic!("odoo-db serve exited before listening: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "odoo-db serve is not listening on {} after 30 s",
                serve.addr
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        serve
    }

    fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.addr, path, None)
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal)
            .expect("signalling odoo-db serve");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET over plain HTTP/1.1: the status code and the body.
pub(crate) fn http_get(addr: &str, path: &str, authorization: Option<&str>) -> (u16, String) {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| ("Authorization", a))
        .into_iter()
        .collect();
    http_get_with(addr, path, &headers)
}

/// GET over plain HTTP/1.1 with extra `headers`: the status code and the body.
fn http_get_with(addr: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream =
        TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {response:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    (status, body.to_string())
}

fn parse(exposition: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(exposition.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("not a Prometheus exposition ({e}):\n{exposition}"))
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"));
    match sample.value {
        prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}

/// The heartbeat's counter on the primary: one more per probe of the cluster.
fn beats(primary: &PgServer) -> i64 {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        util::admin_in(primary, "odoo_db")
            .await
            .query_one("SELECT beat FROM heartbeat.beat WHERE id = 1", &[])
            .await
            .expect("reading the heartbeat")
            .get(0)
    })
}

fn metric_names(scrape: &prometheus_parse::Scrape) -> std::collections::BTreeSet<String> {
    scrape.samples.iter().map(|s| s.metric.clone()).collect()
}

#[test]
fn metrics_hold_every_textfile_metric_and_serves_own() {
    let harness = fleet();
    let config = config(&harness, "metrics", "min_interval = \"1s\"");
    let serve = Serve::start(&harness, &config, &[]);

    let (status, exposition) = serve.get("/metrics");
    assert_eq!(status, 200, "{exposition}");
    let scrape = parse(&exposition);
    for cluster in ["production", "integration"] {
        assert_eq!(
            value(
                &scrape,
                "odoo_db_up",
                &[("cluster", cluster), ("server", "primary")]
            ),
            1.0,
            "{exposition}"
        );
        assert!(
            value(
                &scrape,
                "odoo_db_probe_duration_seconds",
                &[("cluster", cluster)]
            ) > 0.0
        );
        assert_eq!(
            value(&scrape, "odoo_db_probes_total", &[("cluster", cluster)]),
            1.0
        );
        assert_eq!(
            value(
                &scrape,
                "odoo_db_probe_errors_total",
                &[("cluster", cluster)]
            ),
            0.0
        );
    }
    assert_eq!(
        value(&scrape, "odoo_db_check_status", &[]),
        0.0,
        "{exposition}"
    );

    // Every metric of the timer's textfile, from a health run against the same servers.
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let textfile = dir.path().join("odoo_db.prom");
    util::odoo_db_for(&harness)
        .env("ODOO_DB_CONFIG", &config)
        .args(["health", "--format", "json", "--textfile"])
        .arg(&textfile)
        .run()
        .success();
    let timer = parse(&std::fs::read_to_string(&textfile).unwrap());
    let missing: Vec<_> = metric_names(&timer)
        .difference(&metric_names(&scrape))
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "not in /metrics: {missing:?}\n{exposition}"
    );

    // One cluster (Prometheus multi-target), and an unknown one refused with a message.
    let (status, one) = serve.get("/probe?cluster=integration");
    assert_eq!(status, 200, "{one}");
    let one = parse(&one);
    assert!(one
        .samples
        .iter()
        .all(|s| s.labels.get("cluster").is_none_or(|c| c == "integration")));
    assert_eq!(
        value(&one, "odoo_db_up", &[("cluster", "integration")]),
        1.0
    );
    let (status, body) = serve.get("/probe?cluster=nope");
    assert_eq!(status, 400);
    assert!(
        body.contains("unknown cluster \"nope\"") && body.contains("production"),
        "{body}"
    );
    let (status, body) = serve.get("/probe");
    assert_eq!(status, 400, "{body}");

    // The JSON report, 200 while healthy.
    let (status, body) = serve.get("/health");
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(report["status"], "OK", "{report:#}");
    assert_eq!(report["clusters"].as_array().unwrap().len(), 2);
    assert_eq!(serve.get("/nowhere").0, 404);
}

#[test]
fn fifty_concurrent_scrapes_make_one_probe() {
    let harness = fleet();
    let config = config(&harness, "shared", "min_interval = \"1h\"");
    let serve = Serve::start(&harness, &config, &["--cluster", "production"]);
    let before = beats(&harness.primary);
    let scrapes: Vec<_> = (0..50)
        .map(|_| {
            let addr = serve.addr.clone();
            std::thread::spawn(move || http_get(&addr, "/metrics", None))
        })
        .collect();
    for scrape in scrapes {
        let (status, body) = scrape.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            value(&parse(&body), "odoo_db_up", &[("server", "primary")]),
            1.0
        );
    }
    assert_eq!(
        beats(&harness.primary) - before,
        1,
        "50 scrapes, one heartbeat"
    );
    // Later scrapes within min_interval: answered from that probe.
    let (_, body) = serve.get("/metrics");
    assert_eq!(
        value(
            &parse(&body),
            "odoo_db_probes_total",
            &[("cluster", "production")]
        ),
        1.0
    );
    assert_eq!(beats(&harness.primary) - before, 1);
    // --cluster: only its share.
    assert!(parse(&body)
        .samples
        .iter()
        .all(|s| s.labels.get("cluster").is_none_or(|c| c == "production")));
    assert_eq!(serve.get("/probe?cluster=integration").0, 400);
}

/// Sessions of serve on a server (odoo-db's application_name).
fn sessions(server: &PgServer) -> i64 {
    server
        .psql_superuser("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'odoo-db'")
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn killed_sessions_and_a_restarted_standby_are_survived() {
    let harness = fleet();
    let standby = harness.standby.as_ref().unwrap();
    let config = config(&harness, "faults", "min_interval = \"0s\"");
    let serve = Serve::start(&harness, &config, &["--cluster", "production"]);
    let up = |serve: &Serve| {
        let (status, body) = serve.get("/metrics");
        assert_eq!(status, 200, "{body}");
        let scrape = parse(&body);
        (
            value(&scrape, "odoo_db_up", &[("server", "primary")]),
            value(&scrape, "odoo_db_up", &[("role", "standby")]),
        )
    };
    assert_eq!(up(&serve), (1.0, 1.0));
    // Between probes, one session per server, no more.
    assert_eq!(sessions(&harness.primary), 1);
    assert_eq!(sessions(standby), 1);

    // Every pooled session terminated: the next scrape reconnects and is right.
    for server in [&harness.primary, standby] {
        server
            .psql_superuser(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'odoo-db'",
            )
            .unwrap();
    }
    assert_eq!(up(&serve), (1.0, 1.0));
    assert_eq!(sessions(&harness.primary), 1);

    // The standby down: said so; back: said so, without restarting serve.
    standby.stop().unwrap();
    assert_eq!(up(&serve), (1.0, 0.0));
    standby.start().unwrap();
    util::wait_until(
        Duration::from_secs(30),
        "serve sees the standby again",
        || up(&serve) == (1.0, 1.0),
    );
    let (_, body) = serve.get("/metrics");
    assert!(
        value(
            &parse(&body),
            "odoo_db_probe_errors_total",
            &[("cluster", "production")]
        ) >= 1.0
    );
    assert_eq!(sessions(standby), 1);
}

/// Every process of a server stopped (SIGSTOP), as a partitioned or hung machine looks:
/// connections are accepted by the kernel, nothing answers, pooled sessions hang in the
/// middle of a query. Started again (SIGCONT) when dropped, whatever the test did.
struct Frozen(Vec<i32>);

impl Frozen {
    fn new(server: &PgServer) -> Frozen {
        let pids = util::processes_in(&server.data_dir);
        assert!(!pids.is_empty(), "no process of the {} server", server.name);
        for &pid in &pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGSTOP,
            );
        }
        Frozen(pids)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        for &pid in &self.0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGCONT,
            );
        }
    }
}

/// A standby that stops answering holds a probe until odoo-db gives up on it (5 s here,
/// the connect timeout; up to 85 % of `[health] timeout` for a query that hangs), which
/// can be longer than Prometheus waits for a scrape. A scrape that says how long it may
/// wait (`X-Prometheus-Scrape-Timeout-Seconds`) is answered in time, from the last
/// finished probe; the probe goes on without it, and its verdict (the standby does not
/// answer) answers the next scrape: one probe, not one per scrape.
#[test]
fn a_standby_that_stops_answering_never_holds_a_scrape_past_prometheus_timeout() {
    let harness = fleet();
    let standby = harness.standby.as_ref().unwrap();
    let config = config(
        &harness,
        "frozen",
        "min_interval = \"0s\"\n\n[health]\ntimeout = \"12s\"",
    );
    let serve = Serve::start(&harness, &config, &["--cluster", "production"]);
    let (status, body) = serve.get("/metrics");
    assert_eq!(status, 200, "{body}");
    let first = parse(&body);
    assert_eq!(value(&first, "odoo_db_up", &[("role", "standby")]), 1.0);
    let probes = |scrape: &prometheus_parse::Scrape| {
        value(scrape, "odoo_db_probes_total", &[("cluster", "production")])
    };
    let probes_before = probes(&first);

    let frozen = Frozen::new(standby);
    let prometheus = [("X-Prometheus-Scrape-Timeout-Seconds", "2")];
    let started = Instant::now();
    let (status, body) = http_get_with(&serve.addr, "/metrics", &prometheus);
    let took = started.elapsed();
    assert_eq!(status, 200, "{body}");
    assert!(
        took < Duration::from_secs(2) + util::LATE_MARGIN,
        "the scrape took {took:?}, past Prometheus' 2 s"
    );
    // Meanwhile: the last finished probe, which saw the standby streaming.
    let meanwhile = parse(&body);
    assert_eq!(value(&meanwhile, "odoo_db_up", &[("role", "standby")]), 1.0);
    assert_eq!(probes(&meanwhile), probes_before);

    // The probe that scrape started went on; a scrape without a limit waits for it.
    let (status, body) = serve.get("/metrics");
    assert_eq!(status, 200, "{body}");
    let verdict = parse(&body);
    assert_eq!(
        value(&verdict, "odoo_db_up", &[("role", "standby")]),
        0.0,
        "{body}"
    );
    assert_eq!(value(&verdict, "odoo_db_up", &[("server", "primary")]), 1.0);
    assert_eq!(
        probes(&verdict),
        probes_before + 1.0,
        "one probe, not one per scrape"
    );

    // A serve that has no finished probe yet says why it has no verdict, in time.
    let fresh = Serve::start(&harness, &config, &["--cluster", "production"]);
    let started = Instant::now();
    let (status, body) = http_get_with(&fresh.addr, "/health", &prometheus);
    assert!(started.elapsed() < Duration::from_secs(2) + util::LATE_MARGIN);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("still runs after"), "{body}");
    drop(fresh);

    drop(frozen);
    util::wait_until(
        Duration::from_secs(30),
        "serve sees the standby again",
        || {
            let (_, body) = serve.get("/metrics");
            value(&parse(&body), "odoo_db_up", &[("role", "standby")]) == 1.0
        },
    );
}

#[test]
fn sigterm_ends_it_at_once_and_sighup_reloads() {
    use nix::sys::signal::Signal;
    let harness = fleet();
    let path = config(&harness, "reload", "min_interval = \"0s\"");
    // What systemd (Type=notify) would hear, on a socket of the test's own.
    let notify_dir = tempfile::tempdir().unwrap();
    let notify_path = notify_dir.path().join("notify");
    let systemd = std::os::unix::net::UnixDatagram::bind(&notify_path).unwrap();
    systemd
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let told = |what: &str| {
        let mut buffer = [0u8; 4096];
        let length = systemd
            .recv(&mut buffer)
            .unwrap_or_else(|e| panic!("systemd was not told {what}: {e}"));
        String::from_utf8_lossy(&buffer[..length]).into_owned()
    };
    let mut serve = Serve::start_with_env(&harness, &path, &[], &[("NOTIFY_SOCKET", &notify_path)]);
    let ready = told("READY=1");
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready:?}");
    assert!(ready.contains("STATUS=serving production"), "{ready:?}");
    assert_eq!(serve.get("/metrics").0, 200);

    // A broken config: refused, the old one keeps serving.
    std::fs::write(&path, "this is [not toml").unwrap();
    serve.signal(Signal::SIGHUP);
    let reloading = told("RELOADING=1");
    assert!(
        reloading.lines().any(|l| l == "RELOADING=1"),
        "{reloading:?}"
    );
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading:?}");
    assert_eq!(told("READY=1 after the reload"), "READY=1\n");
    let (status, body) = serve.get("/metrics");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("cluster=\"integration\""), "{body}");

    // A good one that drops the integration cluster: in force at once.
    std::fs::write(&path, config_without_integration(&harness)).unwrap();
    serve.signal(Signal::SIGHUP);
    told("RELOADING=1");
    told("READY=1 after the reload");
    assert!(!serve.get("/metrics").1.contains("cluster=\"integration\""));

    // SIGTERM: exit 0 within a second, sessions closed.
    assert!(sessions(&harness.primary) >= 1);
    let started = Instant::now();
    serve.signal(Signal::SIGTERM);
    assert_eq!(told("STOPPING=1"), "STOPPING=1\n");
    let status = loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM");
    assert!(took < Duration::from_secs(1), "SIGTERM took {took:?}");
    util::wait_until(Duration::from_secs(5), "serve's sessions are gone", || {
        sessions(&harness.primary) == 0
    });
}

/// The harness's config without its integration cluster.
fn config_without_integration(harness: &Harness) -> String {
    let mut kept = Vec::new();
    let mut skipping = false;
    let toml = harness.config_toml();
    for line in toml.lines() {
        if line.starts_with('[') {
            skipping = line.trim() == "[clusters.integration]";
        }
        if !skipping {
            kept.push(line);
        }
    }
    format!("{}\n[serve]\nmin_interval = \"0s\"\n", kept.join("\n"))
}

/// Headless Chromium, its profile and temporary files in `dir` (nothing left in /tmp).
fn chromium(dir: &Path, args: &[&str]) -> String {
    let output = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-crash-reporter",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", dir.join("profile").display()))
        .args(args)
        .env("TMPDIR", dir)
        .env("HOME", dir)
        .output()
        .unwrap_or_else(|e| panic!("running chromium (scripts/install-deps installs it): {e}"));
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The value of attribute `name` in the first element of `dom` that carries `marker`.
fn attribute(dom: &str, marker: &str, name: &str) -> String {
    let start = dom
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in the page:\n{dom}"));
    let tag_end = start + dom[start..].find('>').unwrap();
    let tag = &dom[start..tag_end];
    let key = format!("{name}=\"");
    let at = tag
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + key.len();
    tag[at..at + tag[at..].find('"').unwrap()].to_string()
}

#[test]
fn the_status_page_renders_in_a_browser_without_secrets() {
    let harness = fleet();
    // A password in the config's URL: no endpoint may show it, nor the URL.
    let text = format!(
        "{}\n[serve]\nmin_interval = \"0s\"\n",
        harness.config_toml()
    )
    .replace(
        "odoo_db_admin@",
        &format!("odoo_db_admin:{}@", pgsandbox::ADMIN_PASSWORD),
    );
    let path = harness.dir.join("page.toml");
    std::fs::write(&path, &text).unwrap();
    let serve = Serve::start(&harness, &path, &[]);
    std::fs::remove_file(&path).unwrap();
    for _ in 0..3 {
        assert_eq!(serve.get("/metrics").0, 200);
    }

    let dir = tempfile::tempdir_in(&harness.dir).unwrap();
    let url = format!("http://{}/", serve.addr);
    let dom = chromium(dir.path(), &["--dump-dom", &url]);
    for cluster in ["production", "integration"] {
        let marker = format!("data-cluster=\"{cluster}\"");
        assert_eq!(attribute(&dom, &marker, "data-state"), "OK", "{dom}");
    }
    let standby = "data-role=\"standby\"";
    assert_eq!(attribute(&dom, standby, "data-state"), "OK");
    let lag_bytes: u64 = attribute(&dom, standby, "data-lag-bytes").parse().unwrap();
    let lag_seconds: f64 = attribute(&dom, standby, "data-lag-seconds")
        .parse()
        .unwrap();
    assert!(lag_bytes < 16 << 20, "{lag_bytes}");
    assert!((0.0..30.0).contains(&lag_seconds), "{lag_seconds}");
    assert!(dom.contains("class=\"lag-bytes\""), "{dom}");
    // The chart of the last hour, from the probes so far (at least the 3 scrapes').
    let points = attribute(&dom, "<polyline", "points");
    assert!(points.split_whitespace().count() >= 3, "{points}");
    assert!(dom.contains("id=\"probed-at\""));
    assert!(dom.contains("id=\"no-failing-checks\""), "{dom}");

    // A screenshot, as the README shows it (SERVE_SCREENSHOT=path keeps a copy).
    let png = dir.path().join("serve.png");
    chromium(
        dir.path(),
        &[
            "--window-size=1100,900",
            &format!("--screenshot={}", png.display()),
            &url,
        ],
    );
    let bytes = std::fs::read(&png).expect("the screenshot");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    if let Some(keep) = std::env::var_os("SERVE_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }

    for endpoint in ["/", "/health", "/metrics", "/probe?cluster=production"] {
        let (_, body) = serve.get(endpoint);
        for secret in [pgsandbox::ADMIN_PASSWORD, "postgresql://", "password="] {
            assert!(
                !body.contains(secret),
                "{endpoint} shows {secret:?}:\n{body}"
            );
        }
    }
}

/// curl (TLS, basic authentication): the status code and the body.
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let output = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "60", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("running curl (scripts/install-deps installs it)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn tls_and_basic_authentication_from_a_web_config() {
    let harness = fleet();
    let dir = tempfile::tempdir_in(&harness.dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("serve.crt");
    let key = dir.path().join("serve.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    // As `htpasswd -nBC 4 prometheus` writes it ($2y$).
    let hash = bcrypt::hash_with_salt("s3cret scrape", 4, [7; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  prometheus: '{hash}'\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let config = config(
        &harness,
        "tls",
        &format!("min_interval = \"1s\"\nweb_config = \"{}\"", web.display()),
    );
    let serve = Serve::start(&harness, &config, &[]);
    let port = serve.addr.rsplit(':').next().unwrap();
    let url = format!("https://localhost:{port}/metrics");
    let cacert = cert.to_string_lossy().into_owned();

    assert_eq!(curl(&["--cacert", &cacert], &url).0, 401, "no credentials");
    assert_eq!(
        curl(&["--cacert", &cacert, "-u", "prometheus:wrong"], &url).0,
        401,
        "a wrong password"
    );
    assert_eq!(
        curl(&["--cacert", &cacert, "-u", "nobody:s3cret scrape"], &url).0,
        401,
        "an unknown user"
    );
    for _ in 0..2 {
        let (status, body) = curl(
            &["--cacert", &cacert, "-u", "prometheus:s3cret scrape"],
            &url,
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(value(&parse(&body), "odoo_db_check_status", &[]), 0.0);
    }
    // Plain HTTP on the TLS port gets no answer.
    let (status, _) = curl(&[], &format!("http://localhost:{port}/metrics"));
    assert_ne!(status, 200);
    drop(serve);

    // A web config that does not load: serve does not start (refused, exit 2).
    std::fs::write(&web, "basic_auth_users:\n  prometheus: plaintext\n").unwrap();
    let run = util::odoo_db_for(&harness)
        .env("ODOO_DB_CONFIG", &config)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", free_port())])
        .timeout(Duration::from_secs(30))
        .run();
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("basic_auth_users.prometheus: not a bcrypt hash"),
        "{}",
        run.stderr
    );
}
