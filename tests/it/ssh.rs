//! Clusters behind an SSH bastion, against a real `sshd` started here on 127.0.0.1 with
//! generated host and client keys (package openssh-server; sshd's privilege separation
//! needs root, which the test environment is).
//!
//! Proves: the jobs give the same results through the bastion as direct; each failing
//! hop (unknown host key, wrong key, unreachable or stalling bastion, a bastion that
//! cannot reach the database) ends with exit 1 and a message naming that hop, within the
//! timeout; one bad bastion fails only its own clusters; forwards listen on 127.0.0.1
//! only; TLS through the tunnel verifies the real server name (tokio-postgres and libpq);
//! no ssh process of odoo-db's remains after a run, after SIGINT, and the master of a
//! SIGKILLed run exits by itself, its leftovers removed by the next run; under systemd,
//! the key and known_hosts come as credentials and the sockets go to RuntimeDirectory=.

use std::net::TcpListener;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use odoo_db::cmd::sandbox::ClientFiles;
use odoo_db::config::Config;
use odoo_db::servers::Servers;
use pgconn::SessionOptions;
use pgsandbox::Harness;

use crate::util::{self, odoo_db, unique, wait_until, OdooDb, Run};

// ---------------------------------------------------------------------------------------
// A throwaway sshd.

struct Sshd {
    port: u16,
    dir: PathBuf,
    user: String,
    /// Authorized on the bastion.
    client_key: PathBuf,
    /// A valid key that the bastion does not know.
    wrong_key: PathBuf,
    /// Holds the bastion's host key.
    known_hosts: PathBuf,
    /// Holds nothing.
    empty_known_hosts: PathBuf,
}

static SSHD: OnceLock<Sshd> = OnceLock::new();

fn sshd() -> &'static Sshd {
    SSHD.get_or_init(|| start_sshd().unwrap_or_else(|e| panic!("starting the test sshd: {e}")))
}

fn keygen(path: &Path) -> Result<(), String> {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "odoo-db-test", "-f"])
        .arg(path)
        .output()
        .map_err(|e| format!("running ssh-keygen (package openssh-client): {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

fn start_sshd() -> Result<Sshd, String> {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() {
        return Err("/usr/sbin/sshd not found: install package openssh-server".to_string());
    }
    if !nix::unistd::geteuid().is_root() {
        return Err("the SSH tests start sshd, whose privilege separation needs root".to_string());
    }
    // sshd's privilege separation directory (Debian creates it only when the service runs).
    std::fs::create_dir_all("/run/sshd").map_err(|e| format!("creating /run/sshd: {e}"))?;
    let dir = tempfile::Builder::new()
        .prefix("odoo-db-sshd-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let host_key = dir.join("host_ed25519");
    let client_key = dir.join("client_ed25519");
    let wrong_key = dir.join("wrong_ed25519");
    for key in [&host_key, &client_key, &wrong_key] {
        keygen(key)?;
    }
    std::fs::copy(dir.join("client_ed25519.pub"), dir.join("authorized_keys"))
        .map_err(|e| e.to_string())?;
    let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".to_string());

    let mut last_error = String::new();
    for _ in 0..5 {
        let port = free_port();
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {dir}/sshd.pid\n\
                 AuthorizedKeysFile {dir}/authorized_keys\nStrictModes no\nUsePAM no\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PermitRootLogin prohibit-password\nAllowTcpForwarding yes\n\
                 AllowStreamLocalForwarding yes\nMaxStartups 200\nMaxSessions 100\n\
                 LogLevel VERBOSE\n",
                host = host_key.display(),
                dir = dir.display(),
            ),
        )
        .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("sshd.log")).map_err(|e| e.to_string())?;
        let mut child: Child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting sshd: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let up = loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break true;
            }
            if child.try_wait().ok().flatten().is_some() || Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if !up {
            let _ = child.kill();
            let _ = child.wait();
            last_error = std::fs::read_to_string(dir.join("sshd.log")).unwrap_or_default();
            continue;
        }
        // Stop sshd and remove its directory when this test process ends, however it ends.
        let mut watchdog = Command::new("/bin/sh");
        watchdog
            .arg("-c")
            .arg(format!(
                "while [ -d /proc/{pid} ]; do sleep 0.5; done; kill {sshd}; rm -rf '{dir}'",
                pid = std::process::id(),
                sshd = child.id(),
                dir = dir.display(),
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut watchdog, 0);
        watchdog
            .spawn()
            .map_err(|e| format!("starting the sshd watchdog: {e}"))?;
        std::mem::forget(child);

        let host_pub =
            std::fs::read_to_string(dir.join("host_ed25519.pub")).map_err(|e| e.to_string())?;
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_pub}"))
            .map_err(|e| e.to_string())?;
        let empty_known_hosts = dir.join("empty_known_hosts");
        std::fs::write(&empty_known_hosts, "").map_err(|e| e.to_string())?;
        return Ok(Sshd {
            port,
            dir,
            user,
            client_key,
            wrong_key,
            known_hosts,
            empty_known_hosts,
        });
    }
    Err(format!("sshd did not start: {last_error}"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

// ---------------------------------------------------------------------------------------
// Configs that route clusters through the bastion.

/// How a test reaches the bastion; the control directory is the test's own, so its
/// processes and leftovers can be told apart from other tests'.
struct Route {
    destination: String,
    identity: PathBuf,
    known_hosts: PathBuf,
    control_dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Route {
    fn good() -> Route {
        let s = sshd();
        let tmp = tempfile::Builder::new()
            .prefix("odoo-db-ssh-test-")
            .tempdir()
            .unwrap();
        Route {
            destination: format!("ssh://{}@127.0.0.1:{}", s.user, s.port),
            identity: s.client_key.clone(),
            known_hosts: s.known_hosts.clone(),
            control_dir: tmp.path().join("ctl"),
            _tmp: tmp,
        }
    }

    fn toml(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        format!(
            "ssh = {}\nssh_identity = {}\nssh_known_hosts = {}\nssh_control_dir = {}\n",
            quote(&self.destination),
            quote(&self.identity.to_string_lossy()),
            quote(&self.known_hosts.to_string_lossy()),
            quote(&self.control_dir.to_string_lossy()),
        )
    }

    /// `config` with every cluster (or only `only`) behind this bastion.
    fn apply(&self, config: &str, only: Option<&str>) -> String {
        let mut out = String::new();
        let mut cluster = None::<String>;
        for line in config.lines() {
            out.push_str(line);
            out.push('\n');
            if let Some(name) = line
                .strip_prefix("[clusters.")
                .and_then(|l| l.strip_suffix(']'))
            {
                cluster = Some(name.to_string());
            }
            if line.starts_with("kind = ")
                && only.is_none_or(|only| cluster.as_deref() == Some(only))
            {
                out.push_str(&self.toml());
            }
        }
        out
    }

    fn write(&self, config: &str) -> PathBuf {
        let path = self._tmp.path().join(format!("{}.toml", unique("config")));
        std::fs::write(&path, config).unwrap();
        path
    }

    /// The runner of the built binary with `config` and `harness`'s pgpass.
    fn odoo_db(&self, harness: &Harness, config: &Path) -> OdooDb {
        OdooDb::new()
            .env("ODOO_DB_CONFIG", config)
            .env("PGPASSFILE", harness.pgpass_path())
    }

    /// Nothing of the runs is left: no process uses the control directory, and the
    /// directory holds nothing (the per-run directories were removed).
    #[track_caller]
    fn assert_clean(&self) {
        let ctl = self.control_dir.clone();
        wait_until(
            Duration::from_secs(3),
            "no ssh process uses the control directory",
            || processes_using(&ctl).is_empty(),
        );
        let left: Vec<_> = std::fs::read_dir(&ctl)
            .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in {}: {left:?}", ctl.display());
    }
}

/// Processes with an argument inside `dir` (the ssh master names its control socket).
fn processes_using(dir: &Path) -> Vec<i32> {
    let prefix = format!("{}/", dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .split('\0')
                .any(|arg| arg.starts_with(&prefix))
                .then_some(pid)
        })
        .collect()
}

/// (file, local address) of every listening TCP socket of process `pid`.
fn listening_sockets(pid: i32) -> Vec<(String, String)> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.flatten()
                .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                .filter_map(|target| {
                    let target = target.to_string_lossy().into_owned();
                    target
                        .strip_prefix("socket:[")
                        .and_then(|t| t.strip_suffix(']'))
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut found = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() > 9 && fields[3] == "0A" && inodes.iter().any(|i| i == fields[9]) {
                found.push((file.to_string(), fields[1].to_string()));
            }
        }
    }
    found
}

#[track_caller]
fn assert_within(run: &Run, started: Instant, limit: Duration) {
    assert!(
        started.elapsed() <= limit,
        "took {:?} (limit {limit:?})\n{}",
        started.elapsed(),
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------
// Same results as direct.

#[test]
fn provision_and_list_through_the_bastion_match_direct() {
    let harness = util::initialized();
    let route = Route::good();
    let config = route.write(&route.apply(&harness.config_toml(), None));
    let through = || route.odoo_db(harness, &config);

    // Provision through the bastion; the same command direct finds it done and prints the same.
    let customer = unique("bastion");
    let secrets = util::scratch_dir();
    let first = through()
        .args(["provision", "--customer", &customer, "--secrets-dir"])
        .arg(secrets.path())
        .run();
    first.success();
    assert!(
        first
            .stdout
            .contains(&format!("export DB_PORT={}", harness.primary.port)),
        "DB_PORT must be the server's port, not the forward's:\n{}",
        first.stdout
    );
    let direct = odoo_db()
        .args(["provision", "--customer", &customer, "--secrets-dir"])
        .arg(secrets.path())
        .run();
    direct.success();
    assert_eq!(first.stdout, direct.stdout);
    route.assert_clean();

    // And the other way round.
    let customer = unique("direct");
    let secrets = util::scratch_dir();
    let direct = odoo_db()
        .args(["provision", "--customer", &customer, "--secrets-dir"])
        .arg(secrets.path())
        .run();
    direct.success();
    let again = through()
        .args(["provision", "--customer", &customer, "--secrets-dir"])
        .arg(secrets.path())
        .run();
    again.success();
    assert_eq!(direct.stdout, again.stdout);

    // list: the same entries, sizes included (read through the forwards).
    let entry = |run: &Run| {
        let entries: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
        let mut mine: Vec<serde_json::Value> = entries
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["customer"] == customer.as_str())
            .cloned()
            .collect();
        for e in &mut mine {
            e.as_object_mut().unwrap().remove("size_bytes");
        }
        mine
    };
    let listed_through = through().args(["list", "--format", "json"]).run();
    listed_through.success();
    let listed_direct = odoo_db().args(["list", "--format", "json"]).run();
    listed_direct.success();
    let mine = entry(&listed_through);
    assert_eq!(mine.len(), 2, "{}", listed_through.stdout);
    assert!(mine.iter().all(|e| e["present"] == true), "{mine:?}");
    assert_eq!(mine, entry(&listed_direct));
    route.assert_clean();
}

#[test]
fn recreate_through_the_bastion_matches_direct() {
    let harness = util::initialized();
    let route = Route::good();
    let config = route.write(&route.apply(&harness.config_toml(), None));
    let customer = unique("recreate-bastion");
    let secrets = util::scratch_dir();
    let provisioned = odoo_db()
        .args([
            "provision",
            "--customer",
            &customer,
            "--env",
            "integration",
            "--secrets-dir",
        ])
        .arg(secrets.path())
        .run();
    provisioned.success();
    let name = provisioned
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("export DB_NAME="))
        .expect("the provisioned name")
        .to_string();
    assert!(name.ends_with("_integration"), "{name}");

    // With its backup: pg_dump and pg_restore -f /dev/null go through the forward too.
    let through = route
        .odoo_db(harness, &config)
        .args(["recreate", &name, "--yes"])
        .run();
    through.success();
    let direct = odoo_db().args(["recreate", &name, "--yes"]).run();
    direct.success();
    // The plan (owner, encoding, …, the server's real address) reads the same; only the
    // timings and the backup file names differ.
    let plan = |run: &Run| {
        run.stdout
            .lines()
            .take_while(|line| !line.starts_with("recreated "))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(plan(&through), plan(&direct));
    assert!(
        plan(&through).contains(&format!(
            "127.0.0.1:{}",
            harness.integration.as_ref().unwrap().port
        )),
        "{}",
        through.stdout
    );
    assert!(
        through.stdout.contains("read back whole"),
        "{}",
        through.stdout
    );
    route.assert_clean();
}

#[test]
fn health_through_the_bastion_matches_direct() {
    let harness = util::initialized();
    let route = Route::good();
    let config = route.write(&route.apply(&harness.config_toml(), None));
    let through = route
        .odoo_db(harness, &config)
        .args(["health", "--format", "nagios"])
        .run();
    let direct = odoo_db().args(["health", "--format", "nagios"]).run();
    assert_eq!(
        through.code, direct.code,
        "through:\n{}{}\ndirect:\n{}{}",
        through.stdout, through.stderr, direct.stdout, direct.stderr
    );
    let status = |run: &Run| run.stdout.split(" - ").next().unwrap_or("").to_string();
    assert_eq!(
        status(&through),
        status(&direct),
        "{}\n{}",
        through.stdout,
        direct.stdout
    );
    route.assert_clean();
}

// ---------------------------------------------------------------------------------------
// Each failing hop, named, within the timeout.

/// `list` and `health` with a broken route: exit 1 / CRITICAL, quickly,
/// with every `expected` fragment in the message.
fn assert_hop_fails(route: &Route, config_text: &str, expected: &[&str], limit: Duration) {
    let harness = util::shared();
    let config = route.write(config_text);
    let started = Instant::now();
    let run = route.odoo_db(harness, &config).args(["list"]).run();
    run.expect_code(1);
    assert_within(&run, started, limit);
    for fragment in expected {
        assert!(
            run.stderr.contains(fragment),
            "missing {fragment:?} in:\n{}",
            run.stderr
        );
    }
    route.assert_clean();
    let started = Instant::now();
    let run = route
        .odoo_db(harness, &config)
        .args(["health", "--format", "nagios"])
        .run();
    assert_eq!(
        run.code, 2,
        "health must be CRITICAL:\n{}{}",
        run.stdout, run.stderr
    );
    assert_within(&run, started, limit);
    let both = format!("{}{}", run.stdout, run.stderr);
    assert!(both.contains(&route.destination), "{both}");
    route.assert_clean();
}

#[test]
fn an_unknown_host_key_is_refused_with_its_fingerprint() {
    let s = sshd();
    let route = Route {
        known_hosts: s.empty_known_hosts.clone(),
        ..Route::good()
    };
    let fingerprint = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(s.dir.join("host_ed25519.pub"))
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    let text = route.apply(&util::shared().config_toml(), None);
    assert_hop_fails(
        &route,
        &text,
        &[
            &format!("bastion {}", route.destination),
            "host key unknown",
            &fingerprint,
            &s.empty_known_hosts.display().to_string(),
        ],
        Duration::from_secs(15),
    );
}

#[test]
fn a_wrong_key_is_refused() {
    let s = sshd();
    let route = Route {
        identity: s.wrong_key.clone(),
        ..Route::good()
    };
    let text = route.apply(&util::shared().config_toml(), None);
    assert_hop_fails(
        &route,
        &text,
        &[
            &format!("bastion {}", route.destination),
            "authentication refused",
            &s.wrong_key.display().to_string(),
        ],
        Duration::from_secs(15),
    );
}

#[test]
fn an_unreachable_bastion_is_named() {
    let route = Route {
        destination: format!("ssh://{}@127.0.0.1:{}", sshd().user, free_port()),
        ..Route::good()
    };
    let text = route.apply(&util::shared().config_toml(), None);
    assert_hop_fails(
        &route,
        &text,
        &[
            &format!("bastion {}", route.destination),
            "cannot connect to the bastion",
            "Connection refused",
        ],
        Duration::from_secs(15),
    );
}

#[test]
fn a_bastion_that_never_answers_is_bounded_by_the_connect_timeout() {
    // Accepts TCP connections and never says a word (not even the SSH banner).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let route = Route {
        destination: format!("ssh://{}@127.0.0.1:{port}", sshd().user),
        ..Route::good()
    };
    // connect_timeout=2 on every server: the bastion's attempt is bounded by it too.
    let text = route
        .apply(&util::shared().config_toml(), None)
        .replace("?sslmode=disable", "?sslmode=disable&connect_timeout=2");
    assert_hop_fails(
        &route,
        &text,
        &[&format!("bastion {}", route.destination)],
        Duration::from_secs(8),
    );
}

#[test]
fn health_s_deadline_during_the_ssh_start_leaves_no_ssh_behind() {
    // The bastion stalls; the connect timeout (10 s) is longer than health's deadline (2 s),
    // so the deadline drops the SSH start half-way: the ssh it spawned must go too.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    let route = Route {
        destination: format!("ssh://{}@127.0.0.1:{port}", sshd().user),
        ..Route::good()
    };
    let text = route
        .apply(&util::shared().config_toml(), None)
        .replace("?sslmode=disable", "?sslmode=disable&connect_timeout=10")
        + "\n[health]\ntimeout = \"2s\"\n";
    let config = route.write(&text);
    let started = Instant::now();
    let run = route
        .odoo_db(util::shared(), &config)
        .args(["health", "--format", "nagios"])
        .run();
    assert_eq!(
        run.code, 3,
        "the deadline is UNKNOWN:\n{}{}",
        run.stdout, run.stderr
    );
    assert_within(&run, started, Duration::from_secs(5));
    route.assert_clean();
}

#[test]
fn a_bastion_that_cannot_reach_the_database_is_named() {
    let harness = util::shared();
    let route = Route::good();
    let closed = free_port();
    let text = route.apply(&harness.config_toml(), None).replace(
        &format!("127.0.0.1:{}/", harness.primary.port),
        &format!("127.0.0.1:{closed}/"),
    );
    assert_hop_fails(
        &route,
        &text,
        &[
            &format!(
                "bastion {} cannot reach the database server 127.0.0.1:{closed}",
                route.destination
            ),
            "Connection refused",
        ],
        Duration::from_secs(15),
    );
}

#[test]
fn one_bad_bastion_fails_only_its_own_clusters() {
    let harness = util::initialized();
    let route = Route {
        destination: format!("ssh://{}@127.0.0.1:{}", sshd().user, free_port()),
        ..Route::good()
    };
    // The catalog's cluster (production) is direct; integration sits behind a dead bastion.
    let config = route.write(&route.apply(&harness.config_toml(), Some("integration")));
    let run = route
        .odoo_db(harness, &config)
        .args(["list", "--format", "json"])
        .run();
    run.success();
    assert!(
        run.stderr
            .contains(&format!("bastion {}", route.destination)),
        "the warning must name the bastion:\n{}",
        run.stderr
    );
    route.assert_clean();
}

// ---------------------------------------------------------------------------------------
// Forwards, signals, leftovers.

/// `odoo-db health` held for `millis` right after its forwards are open.
fn held_command(harness: &Harness, config: &Path, millis: u64) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_odoo-db"));
    for (key, _) in std::env::vars_os() {
        let name = key.to_string_lossy();
        if name.starts_with("PG") || name == "CREDENTIALS_DIRECTORY" || name == "RUNTIME_DIRECTORY"
        {
            command.env_remove(&key);
        }
    }
    command
        .env("ODOO_DB_CONFIG", config)
        .env("PGPASSFILE", harness.pgpass_path())
        .env("FAILPOINTS", format!("ssh-after-forward=return({millis})"))
        .args(["health", "--format", "nagios"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn spawn_held(harness: &Harness, config: &Path) -> Child {
    held_command(harness, config, 30_000)
        .spawn()
        .expect("starting odoo-db")
}

/// The master of the held run, once its forwards listen.
fn held_master(route: &Route, expected_forwards: usize) -> i32 {
    let mut master = 0;
    wait_until(
        Duration::from_secs(20),
        "the held run's forwards listen",
        || {
            for pid in processes_using(&route.control_dir) {
                if listening_sockets(pid).len() >= expected_forwards {
                    master = pid;
                    return true;
                }
            }
            false
        },
    );
    master
}

/// The masters of a prober that opens one per server, once each listens on its forward:
/// `expected` of them, sorted.
fn held_masters(route: &Route, expected: usize) -> Vec<i32> {
    let mut masters = Vec::new();
    wait_until(
        Duration::from_secs(20),
        "a master per server, each listening on its forward",
        || {
            masters = processes_using(&route.control_dir)
                .into_iter()
                .filter(|&pid| !is_zombie_or_gone(pid) && listening_sockets(pid).len() == 1)
                .collect();
            masters.sort_unstable();
            masters.len() == expected
        },
    );
    masters
}

#[test]
fn forwards_listen_on_loopback_only_and_sigint_closes_everything() {
    let harness = util::shared();
    let route = Route::good();
    let config = route.write(&route.apply(&harness.config_toml(), None));
    let mut child = spawn_held(harness, &config);
    let servers = harness.servers().count();
    let master = held_master(&route, servers);
    let sockets = listening_sockets(master);
    assert_eq!(
        sockets.len(),
        servers,
        "one forward per server: {sockets:?}"
    );
    for (file, local) in &sockets {
        assert_eq!(file, "/proc/net/tcp", "no IPv6 listener: {sockets:?}");
        assert!(
            local.starts_with("0100007F:"),
            "listening on 127.0.0.1 only: {sockets:?}"
        );
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "odoo-db ignored SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(libc::SIGINT),
        "dies by SIGINT: {status:?}"
    );
    route.assert_clean();
    assert!(!Path::new(&format!("/proc/{master}")).exists() || is_zombie_or_gone(master));
}

fn is_zombie_or_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

#[test]
fn a_killed_runs_master_exits_by_itself_and_the_next_run_cleans_up() {
    let harness = util::initialized();
    let route = Route::good();
    let config = route.write(&route.apply(&harness.config_toml(), None));
    let mut child = spawn_held(harness, &config);
    let master = held_master(&route, harness.servers().count());
    child.kill().unwrap();
    child.wait().unwrap();
    // Nobody pings it any more: ControlPersist ends it after MASTER_IDLE.
    let limit = sshtunnel::MASTER_IDLE + Duration::from_secs(10);
    wait_until(limit, "the orphaned master exits by itself", || {
        is_zombie_or_gone(master)
    });
    // Its directory is still there; the next run removes it and works.
    assert!(std::fs::read_dir(&route.control_dir)
        .unwrap()
        .next()
        .is_some());
    route.odoo_db(harness, &config).arg("list").run().success();
    route.assert_clean();
}

// ---------------------------------------------------------------------------------------
// TLS end to end through the tunnel.

#[tokio::test]
async fn tls_through_the_bastion_verifies_the_real_server_name() {
    let tls = crate::conn::server();
    let route = Route::good();
    let config_for = |host: &str| {
        let text = format!(
            "[catalog]\ncluster = \"production\"\n\n[clusters.production]\nkind = \"production\"\n\
             primary = \"postgresql://{user}:{password}@{host}:{port}/postgres?sslmode=verify-full&sslrootcert={ca}\"\n{ssh}",
            user = crate::conn::ADMIN,
            password = crate::conn::ADMIN_PASSWORD,
            port = tls.port,
            ca = tls.ca_pem.display(),
            ssh = route.toml(),
        );
        Config::parse(&text, Path::new("tls-through-bastion.toml")).unwrap()
    };

    // `localhost` is in the certificate: TLS through the forward, the name verified.
    let servers = Servers::open(&config_for("localhost")).await;
    let servers = servers.unwrap();
    let params = servers.primary("production").unwrap();
    assert_eq!(params.label(), format!("localhost:{}", tls.port));
    assert_eq!(params.server_port(), tls.port);
    assert_ne!(params.port(), tls.port, "connects to the forward");
    assert!(params.route().is_some());
    let client = params.connect(&SessionOptions::default()).await.unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl);
    // libpq tools (pg_dump, psql) take the same way: host name verified, forward used.
    let psql = |conninfo: String| {
        Command::new(crate::conn::pg_client_bindir().join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-c",
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            ])
            .arg(conninfo)
            .env("PGPASSWORD", crate::conn::ADMIN_PASSWORD)
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .output()
            .unwrap()
    };
    let output = psql(params.libpq_conninfo());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "t");
    drop(client);
    servers.close().await;
    route.assert_clean();

    // 127.0.0.2 reaches the same server but is not in the certificate, while the forward's
    // own address (127.0.0.1) is: refusing proves the real name is what gets verified.
    let servers = Servers::open(&config_for("127.0.0.2")).await.unwrap();
    let params = servers.primary("production").unwrap();
    let error = params
        .connect(&SessionOptions::default())
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains("certificate must name \"127.0.0.2\""),
        "{text}"
    );
    assert!(
        text.contains(&format!("through bastion {}", route.destination)),
        "{text}"
    );
    let output = psql(params.libpq_conninfo());
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("127.0.0.2"), "{stderr}");
    drop(servers);
    route.assert_clean();
}

// ---------------------------------------------------------------------------------------
// Under systemd.

#[test]
fn systemd_credentials_and_runtime_directory_are_used() {
    let s = sshd();
    let harness = util::initialized();
    let tmp = tempfile::tempdir().unwrap();
    // What LoadCredential= and RuntimeDirectory= provide; the config names neither file
    // nor a control directory.
    let credentials = tmp.path().join("credentials");
    let runtime = tmp.path().join("runtime");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&runtime)
        .unwrap();
    std::fs::copy(&s.client_key, credentials.join("ssh_identity")).unwrap();
    std::fs::copy(&s.known_hosts, credentials.join("ssh_known_hosts")).unwrap();
    std::fs::set_permissions(
        credentials.join("ssh_identity"),
        std::fs::Permissions::from_mode(0o400),
    )
    .unwrap();
    let destination = format!("ssh://{}@127.0.0.1:{}", s.user, s.port);
    let text = harness
        .config_toml()
        .lines()
        .flat_map(|line| {
            let extra = line
                .starts_with("kind = ")
                .then(|| format!("ssh = \"{destination}\""));
            std::iter::once(line.to_string()).chain(extra)
        })
        .collect::<Vec<_>>()
        .join("\n");
    let config = tmp.path().join("odoo-db.toml");
    std::fs::write(&config, text).unwrap();

    let mut child = held_command(harness, &config, 1_000)
        .env("CREDENTIALS_DIRECTORY", &credentials)
        .env("RUNTIME_DIRECTORY", &runtime)
        .spawn()
        .unwrap();
    wait_until(
        Duration::from_secs(20),
        "the master runs in $RUNTIME_DIRECTORY",
        || !processes_using(&runtime).is_empty(),
    );
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    // OK (or WARNING, should the shared standby lag under load): every server answered.
    assert!(matches!(status.code(), Some(0 | 1)), "{status:?}: {stdout}");
    assert!(!stdout.contains("unreachable"), "{stdout}");
    wait_until(
        Duration::from_secs(3),
        "nothing left in $RUNTIME_DIRECTORY",
        || {
            processes_using(&runtime).is_empty()
                && std::fs::read_dir(&runtime).unwrap().next().is_none()
        },
    );
}

#[test]
fn lifecycle_commands_through_the_bastion() {
    let harness = util::initialized();
    let route = Route::good();
    let archives = route._tmp.path().join("archives");
    let config = route.write(&format!(
        "{}\n[lifecycle]\ngrace = \"1s\"\narchive_dir = {}\n",
        route.apply(&harness.config_toml(), None),
        toml::Value::String(archives.to_string_lossy().into_owned())
    ));
    let customer = unique("lifecycle-bastion");
    let secrets = util::scratch_dir();
    std::fs::set_permissions(secrets.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let provisioned = odoo_db()
        .args(["provision", "--customer", &customer, "--secrets-dir"])
        .arg(secrets.path())
        .run();
    provisioned.success();
    let name = provisioned
        .stdout
        .lines()
        .find_map(|line| line.strip_prefix("export DB_NAME="))
        .expect("the provisioned name")
        .to_string();
    let through = |args: &[&str]| {
        route
            .odoo_db(harness, &config)
            .args(&args[..1])
            .args(["--customer", &customer])
            .args(&args[1..])
    };
    let can_login = || {
        harness
            .primary
            .psql_superuser(&format!(
                "SELECT rolcanlogin FROM pg_roles WHERE rolname = '{name}'"
            ))
            .unwrap()
    };

    // rotate: the file, then the new password on the role (pg_authid changes).
    let verifier = || {
        harness
            .primary
            .psql_superuser(&format!(
                "SELECT rolpassword FROM pg_authid WHERE rolname = '{name}'"
            ))
            .unwrap()
    };
    let before = verifier();
    let rotated = secrets.path().join("rotated");
    through(&["rotate", "--env", "production", "--secrets-dir"])
        .arg(&rotated)
        .run()
        .success();
    assert!(rotated.join("production.env").exists());
    assert_ne!(before, verifier(), "the role has a new password");

    // suspend and resume.
    through(&["suspend", "--yes"]).run().success();
    assert_eq!(can_login(), "f");
    through(&["resume"]).run().success();
    assert_eq!(can_login(), "t");

    // retire: pg_dump and its read-back go through the forward too.
    through(&["suspend", "--yes"]).run().success();
    std::thread::sleep(Duration::from_secs(2));
    let retired = through(&["retire", "--yes"]).run();
    retired.success();
    assert_eq!(
        harness
            .primary
            .psql_superuser(&format!(
                "SELECT count(*) FROM pg_database WHERE datname = '{name}'"
            ))
            .unwrap(),
        "0"
    );
    let dumps = std::fs::read_dir(&archives)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".dump"))
        .count();
    assert_eq!(dumps, 2, "{}", retired.stdout);
    route.assert_clean();
}

// ---------------------------------------------------------------------------------------
// serve through the bastion.

/// `odoo_db_up` of every server in a `/metrics` scrape of serve at `addr`.
fn serve_up(addr: &str) -> Vec<f64> {
    let (status, body) = crate::serve::http_get(addr, "/metrics", None);
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|line| line.starts_with("odoo_db_up{"))
        .map(|line| line.rsplit(' ').next().unwrap().parse().unwrap())
        .collect()
}

/// `serve` on `toml` (a config routed through the bastion) with a probe per scrape,
/// once it listens: the process and its address.
fn serve_through(route: &Route, harness: &Harness, toml: &str) -> (Child, String) {
    let config = route.write(&format!("{toml}\n[serve]\nmin_interval = \"0s\"\n"));
    let addr = format!("127.0.0.1:{}", free_port());
    let serve = route
        .odoo_db(harness, &config)
        .args(["serve", "--listen", &addr])
        .spawn();
    wait_until(Duration::from_secs(30), "serve listens", || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    (serve, addr)
}

#[test]
fn serve_keeps_its_ssh_master_and_opens_it_again_when_it_dies() {
    let harness = util::initialized();
    let route = Route::good();
    let (mut serve, addr) =
        serve_through(&route, harness, &route.apply(&harness.config_toml(), None));
    let servers = harness.servers().count();
    assert_eq!(serve_up(&addr), vec![1.0; servers]);
    // One master per server (no server's answers queue behind another's in one SSH
    // connection), and they stay up between scrapes: the same ones answer the next.
    let masters = held_masters(&route, servers);
    for _ in 0..3 {
        assert_eq!(serve_up(&addr), vec![1.0; servers]);
    }
    assert_eq!(held_masters(&route, servers), masters);

    // A master killed: the next scrape says its server is down, then serve opens the
    // masters again and every server is up, without a restart.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(masters[0]),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until(
        Duration::from_secs(30),
        "serve reaches the servers again",
        || serve_up(&addr) == vec![1.0; servers],
    );
    assert!(!held_masters(&route, servers).contains(&masters[0]));

    // SIGTERM: exit 0, the master and its forwards gone with it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = serve.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    route.assert_clean();
}

/// A standby behind the bastion that is down (nothing listens where it is said to be):
/// its server is reported down on every scrape, and serve keeps its SSH masters, which
/// all still answer, instead of opening them again on every probe.
#[test]
fn serve_keeps_its_masters_while_a_server_behind_the_bastion_is_down() {
    let harness = util::initialized();
    let route = Route::good();
    let ghost_port = free_port();
    let toml = route.apply(&harness.config_toml(), None).replacen(
        "standbys = [",
        &format!(
            "standbys = [{{ name = \"ghost\", url = \"postgresql://{}@127.0.0.1:{ghost_port}/postgres?sslmode=disable\" }}, ",
            pgsandbox::ADMIN_ROLE
        ),
        1,
    );
    assert!(toml.contains("name = \"ghost\""), "{toml}");
    let (mut serve, addr) = serve_through(&route, harness, &toml);
    let servers = harness.servers().count() + 1;
    let up = |values: Vec<f64>| values.iter().filter(|&&v| v == 1.0).count();
    assert_eq!(up(serve_up(&addr)), servers - 1);
    let masters = held_masters(&route, servers);
    for _ in 0..5 {
        let values = serve_up(&addr);
        assert_eq!(values.len(), servers, "{values:?}");
        assert_eq!(up(values), servers - 1);
    }
    // Time for masters opened again after those probes (they would be new processes).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(held_masters(&route, servers), masters);

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(serve.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert_eq!(serve.wait().unwrap().code(), Some(0));
    route.assert_clean();
}
