//! SSH bastions: reach a cluster's servers through an SSH jump host.
//!
//! On the platform the PostgreSQL servers are not reachable from a DBA's laptop: the
//! documented way in is an SSH container with access to the cluster. A cluster whose
//! config has `ssh = "ssh://user@bastion:port"` is reached the same way, so every job
//! (provision, recreate and its `pg_dump`, health, audit, list) works from anywhere the
//! bastion is reachable, with the same results as beside the servers.
//!
//! How:
//! - one OpenSSH master connection per bastion per run (the `openssh` crate, native
//!   mux), shared by all the clusters behind it; strict host-key checking (an unknown
//!   key is refused, its fingerprint in the message), `BatchMode` (never a prompt), a
//!   connect timeout bounding TCP, key exchange and authentication as a whole;
//! - one local TCP forward per server, bound to 127.0.0.1 on a free port (the crate
//!   cannot take port 0: pick one, retry on conflict); jobs then connect with
//!   `host=<the server's real name> hostaddr=127.0.0.1 port=<forward>`
//!   ([`ConnParams::via`]), so TLS verifies the real server name end to end, for
//!   tokio-postgres and for libpq tools alike (`libpq_conninfo()` carries the hostaddr);
//!   timeouts, keepalives and `target_session_attrs` apply as on a direct connection;
//! - nothing outlives the run: the master is closed on exit and on error (`close()` or
//!   `Drop`) and on SIGINT/SIGTERM/SIGHUP ([`clean_up_on_signals`]); its `ControlPersist`
//!   is short ([`MASTER_IDLE`]) and a keepalive pings it while the run lives, so even the
//!   master of a SIGKILLed run exits by itself within seconds; the control sockets live in
//!   a private per-run directory that a later run removes if a killed run left it.
//!
//! Errors name the hop that failed: "bastion ssh://…: host key unknown …" for the SSH
//! connection itself; for the hop behind it, a failed connection attempt through a
//! forward is explained from the master's log ("bastion ssh://… cannot reach the database
//! server db1:5432: connect failed: Connection refused"), see [`Tunnel`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use openssh::{ControlPersist, ForwardType, KnownHosts, Session, SessionBuilder, Socket};

use crate::config::{ClusterConfig, Config};
use crate::conn::ConnParams;
use crate::error::{Class, Error, Result};

/// The master exits by itself after this long without a client: the keepalive below
/// pings it far more often while the run lives, so only a killed run lets it expire.
pub const MASTER_IDLE: Duration = Duration::from_secs(15);
/// How often a live run pings its masters (each ping restarts the idle countdown).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// `ServerAliveInterval` (× `ServerAliveCountMax` 3): a vanished bastion is noticed in 15 s.
const SERVER_ALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// Local ports tried per forward before giving up (another process may take the port
/// between our probe and ssh's bind).
const FORWARD_ATTEMPTS: usize = 8;
/// Per-run control directories are named `odoo-db-ssh-<pid>-XXXXXX`.
const RUN_DIR_PREFIX: &str = "odoo-db-ssh-";
/// Longest Unix socket path (sun_path is 108 bytes with the NUL).
const MAX_SOCKET_PATH: usize = 107;
/// What the crate and ssh add to the run directory for the control socket:
/// `/.ssh-connectionXXXXXX` + `/master` + ssh's temporary `.XXXXXXXXXXXXXXXX` suffix.
const CONTROL_SOCKET_SUFFIX: usize = 22 + 7 + 17;

// ---------------------------------------------------------------------------------------
// Configuration of one bastion.

/// One bastion and how to log in: clusters with the same settings share one master.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct BastionSpec {
    /// `ssh://user@host:port`, as configured.
    destination: String,
    identity: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    control_dir: Option<PathBuf>,
}

impl BastionSpec {
    /// The bastion of a cluster, if it has one. Under systemd the key and known_hosts may
    /// come as credentials (`LoadCredential=ssh_identity:…`, `ssh_known_hosts:…`) when
    /// the config does not name them, like the pgpass credential.
    fn of(cluster: &ClusterConfig) -> Option<BastionSpec> {
        Some(BastionSpec {
            destination: cluster.ssh.clone()?,
            identity: cluster
                .ssh_identity
                .clone()
                .or_else(|| credential("ssh_identity")),
            known_hosts: cluster
                .ssh_known_hosts
                .clone()
                .or_else(|| credential("ssh_known_hosts")),
            control_dir: cluster.ssh_control_dir.clone(),
        })
    }

    /// (user, host, port) of the destination, for hints in messages.
    fn parts(&self) -> (Option<&str>, &str, u16) {
        let rest = self
            .destination
            .strip_prefix("ssh://")
            .unwrap_or(&self.destination);
        let (user, rest) = match rest.rsplit_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, rest),
        };
        match rest.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => {
                (user, host, port.parse().unwrap_or(22))
            }
            _ => (user, rest, 22),
        }
    }

    fn known_hosts_label(&self) -> String {
        match &self.known_hosts {
            Some(path) => path.display().to_string(),
            None => "~/.ssh/known_hosts".to_string(),
        }
    }
}

/// `$CREDENTIALS_DIRECTORY/<name>` when systemd passed that credential.
fn credential(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty())?;
    let path = PathBuf::from(dir).join(name);
    path.is_file().then_some(path)
}

/// Where a server is, seen from the bastion: what libpq would connect to (`hostaddr`
/// when given, else `host`), or a Unix socket on the bastion's machine.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Target {
    Tcp { host: String, port: u16 },
    Unix(PathBuf),
}

impl Target {
    /// The target of resolved parameters that were not redirected yet.
    fn of(params: &ConnParams) -> Target {
        if let Some(addr) = params.hostaddr {
            Target::Tcp {
                host: addr.to_string(),
                port: params.port(),
            }
        } else if params.is_unix_socket() {
            Target::Unix(Path::new(params.host()).join(format!(".s.PGSQL.{}", params.port())))
        } else {
            Target::Tcp {
                host: params.host().to_string(),
                port: params.port(),
            }
        }
    }

    fn socket(&self) -> Socket<'_> {
        match self {
            Target::Tcp { host, port } => Socket::new(host.as_str(), *port),
            Target::Unix(path) => Socket::from(path.as_path()),
        }
    }

    fn label(&self) -> String {
        match self {
            Target::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Target::Tcp { host, port } => format!("{host}:{port}"),
            Target::Unix(path) => path.display().to_string(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The bastions of one run.

/// The SSH masters of one run and the forwards through them, per cluster. Built by
/// [`Bastions::open`], which never fails as a whole: one bad bastion must not stop a
/// health run from checking the other clusters. [`Bastions::route`] redirects a server's
/// parameters through its forward; behind a bastion that could not be reached, it gives
/// parameters whose every connection attempt fails with the bastion's error, so each job
/// reports those servers as unreachable (health: CRITICAL), naming the bastion.
#[derive(Default)]
pub struct Bastions {
    /// The bastion of each cluster that has one.
    clusters: BTreeMap<String, BastionSpec>,
    masters: BTreeMap<BastionSpec, std::result::Result<Master, Failure>>,
}

/// An error kept to be returned once per server that needs it.
#[derive(Clone, Debug)]
struct Failure {
    class: Class,
    message: String,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            class: error.class(),
            message: error.to_string(),
        }
    }
}

impl Failure {
    fn to_error(&self) -> Error {
        Error::new(self.class, self.message.clone())
    }
}

impl Bastions {
    /// Start one master per distinct bastion of `config` (concurrently) and a local
    /// forward for every server behind it. Failures are kept per bastion.
    pub async fn open(config: &Config) -> Bastions {
        let mut clusters = BTreeMap::new();
        let mut wanted: BTreeMap<BastionSpec, (BTreeSet<Target>, Duration)> = BTreeMap::new();
        for (name, cluster) in &config.clusters {
            let Some(spec) = BastionSpec::of(cluster) else {
                continue;
            };
            let (targets, timeout) = wanted.entry(spec.clone()).or_default();
            let urls = std::iter::once(cluster.primary.clone())
                .chain(cluster.standbys().into_iter().map(|standby| standby.url));
            for url in urls {
                // A URL that does not resolve fails later, in Servers, with its own message.
                if let Ok(params) = ConnParams::parse_resolved(&url) {
                    targets.insert(Target::of(&params));
                    *timeout = (*timeout).max(params.connect_timeout());
                }
            }
            clusters.insert(name.clone(), spec);
        }
        let started = futures_util::future::join_all(wanted.into_iter().map(
            |(spec, (targets, timeout))| async move {
                let master = Master::start(&spec, &targets, timeout)
                    .await
                    .map_err(Failure::from);
                (spec, master)
            },
        ))
        .await;
        Bastions {
            clusters,
            masters: started.into_iter().collect(),
        }
    }

    /// `params` of a server of `cluster`, redirected through the cluster's bastion when it
    /// has one. When the bastion (or this server's forward) failed, the parameters carry
    /// that error: connecting fails with it at once, and their port is 0, which libpq
    /// refuses, so no tool can go around the bastion either.
    pub fn route(&self, cluster: &str, params: ConnParams) -> ConnParams {
        let Some(spec) = self.clusters.get(cluster) else {
            return params;
        };
        match self.masters.get(spec) {
            Some(Ok(master)) => master.route(params),
            Some(Err(failure)) => failed_route(&spec.destination, params, failure.clone()),
            None => failed_route(
                &spec.destination,
                params,
                Failure {
                    class: Class::Unknown,
                    message: format!(
                        "bastion {}: no SSH connection was started for cluster {cluster}",
                        spec.destination
                    ),
                },
            ),
        }
    }

    /// Close every master and its forwards, and remove the control directories.
    pub async fn close(mut self) {
        let masters = std::mem::take(&mut self.masters);
        for master in masters.into_values().flatten() {
            master.close().await;
        }
    }
}

// ---------------------------------------------------------------------------------------
// One master connection.

/// What a forward needs to know about its master: enough to ping it and read its log,
/// without owning it.
#[derive(Debug)]
struct MasterLink {
    destination: String,
    control: PathBuf,
    log: PathBuf,
}

impl MasterLink {
    /// Whether the master still answers on its control socket.
    async fn check(&self) -> bool {
        let session = Session::resume_mux(self.control.clone().into_boxed_path(), None);
        matches!(
            tokio::time::timeout(Duration::from_secs(2), session.check()).await,
            Ok(Ok(()))
        )
    }
}

struct Master {
    link: Arc<MasterLink>,
    session: Option<Session>,
    /// Private per-run directory holding the control socket, the log and ssh's config.
    run_dir: PathBuf,
    forwards: BTreeMap<Target, std::result::Result<u16, String>>,
    keepalive: Option<tokio::task::JoinHandle<()>>,
}

impl Master {
    async fn start(
        spec: &BastionSpec,
        targets: &BTreeSet<Target>,
        timeout: Duration,
    ) -> Result<Master> {
        let context = |error: Error| error.context(format!("bastion {}", spec.destination));
        let base = control_base(spec).map_err(context)?;
        remove_stale_run_dirs(&base);
        let run_dir = create_run_dir(&base).map_err(context)?;
        // Released on failure, and also when this future is dropped half-way (a caller's
        // deadline): an ssh still authenticating would otherwise become a master.
        let guard = RunDirGuard(Some(run_dir.clone()));
        let master = Self::launch(spec, targets, timeout, &run_dir)
            .await
            .map_err(context)?;
        guard.disarm();
        Ok(master)
    }

    async fn launch(
        spec: &BastionSpec,
        targets: &BTreeSet<Target>,
        timeout: Duration,
        run_dir: &Path,
    ) -> Result<Master> {
        if signal_cleanup_wanted() {
            install_signal_cleanup();
        }
        // (No server URL of the cluster parsed: its jobs fail on that; keep a sane bound.)
        let timeout = timeout.max(Duration::from_secs(1));
        let config_file = run_dir.join("ssh_config");
        write_private(&config_file, SSH_CONFIG.as_bytes())
            .map_err(|e| Error::failed(format!("writing {}: {e}", config_file.display())))?;
        let mut builder = SessionBuilder::default();
        builder
            .known_hosts_check(KnownHosts::Strict)
            .control_directory(run_dir)
            .control_persist(ControlPersist::IdleFor(
                std::num::NonZeroUsize::new(MASTER_IDLE.as_secs() as usize)
                    .expect("MASTER_IDLE is not zero"),
            ))
            .connect_timeout(Duration::from_secs(
                timeout.as_secs_f64().ceil().max(1.0) as u64
            ))
            .server_alive_interval(SERVER_ALIVE_INTERVAL)
            .config_file(&config_file);
        if let Some(identity) = &spec.identity {
            builder.keyfile(identity);
        }
        if let Some(known_hosts) = &spec.known_hosts {
            builder.user_known_hosts_file(known_hosts);
        }
        let started = Instant::now();
        // ConnectTimeout bounds TCP and the banner; this bounds key exchange and
        // authentication too (a bastion that accepts and then stalls).
        let session =
            match tokio::time::timeout(timeout, builder.connect_mux(&spec.destination)).await {
                Ok(Ok(session)) => session,
                Ok(Err(error)) => return Err(Error::failed(describe_launch_failure(spec, &error))),
                Err(_elapsed) => {
                    return Err(Error::failed(format!(
                        "no SSH session within {}s (TCP, key exchange and authentication); is the \
                     bastion up and reachable from here?",
                        timeout.as_secs_f64()
                    )))
                }
            };
        let control = session.control_socket().to_path_buf();
        let link = Arc::new(MasterLink {
            destination: spec.destination.clone(),
            log: control.with_file_name("log"),
            control,
        });
        tracing::debug!(
            bastion = %spec.destination,
            "SSH master up in {} ms",
            started.elapsed().as_millis()
        );
        let mut forwards = BTreeMap::new();
        for target in targets {
            forwards.insert(target.clone(), open_forward(&session, target).await);
        }
        tracing::debug!(
            bastion = %spec.destination,
            "{} forward(s) open after {} ms",
            forwards.len(),
            started.elapsed().as_millis()
        );
        let keepalive = tokio::spawn(keep_alive(link.clone()));
        let master = Master {
            link,
            session: Some(session),
            run_dir: run_dir.to_path_buf(),
            forwards,
            keepalive: Some(keepalive),
        };
        // Tests hold a run here to look at the forwards or to interrupt it
        // (FAILPOINTS=ssh-after-forward=return(MILLISECONDS)).
        #[cfg(feature = "failpoints")]
        if let Some(millis) = fail::eval("ssh-after-forward", |arg| {
            arg.and_then(|a| a.parse::<u64>().ok()).unwrap_or(5000)
        }) {
            tokio::time::sleep(Duration::from_millis(millis)).await;
        }
        Ok(master)
    }

    fn route(&self, params: ConnParams) -> ConnParams {
        let target = Target::of(&params);
        let bastion = &self.link.destination;
        match self.forwards.get(&target) {
            Some(Ok(port)) => {
                let mut routed = params.via(IpAddr::V4(Ipv4Addr::LOCALHOST), *port);
                routed.tunnel = Some(Tunnel(Arc::new(TunnelInner {
                    bastion: bastion.clone(),
                    route: Ok(OpenRoute {
                        master: self.link.clone(),
                        local_port: *port,
                        target,
                    }),
                })));
                routed
            }
            Some(Err(message)) => failed_route(
                bastion,
                params,
                Failure {
                    class: Class::Failed,
                    message: format!("bastion {bastion}: {message}"),
                },
            ),
            None => failed_route(
                bastion,
                params,
                Failure {
                    class: Class::Unknown,
                    message: format!(
                        "bastion {bastion}: no forward was opened to {}",
                        target.label()
                    ),
                },
            ),
        }
    }

    /// Ask the master to stop, then make sure it is gone and its directory removed.
    async fn close(mut self) {
        if let Some(keepalive) = self.keepalive.take() {
            keepalive.abort();
        }
        if let Some(session) = self.session.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), session.close()).await;
        }
        let run_dir = self.run_dir.clone();
        let _ = tokio::task::spawn_blocking(move || release_run_dir(&run_dir)).await;
    }
}

impl Drop for Master {
    /// Exit paths that do not call `close()` (errors, early returns): the same, blocking.
    fn drop(&mut self) {
        if let Some(keepalive) = self.keepalive.take() {
            keepalive.abort();
        }
        // The crate's own Drop asks the master to stop listening.
        drop(self.session.take());
        release_run_dir(&self.run_dir);
    }
}

/// Pings the master while the run lives: each ping restarts its idle countdown.
async fn keep_alive(link: Arc<MasterLink>) {
    let mut ticker = tokio::time::interval(KEEPALIVE_INTERVAL);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if !link.check().await {
            tracing::warn!(
                bastion = %link.destination,
                "the SSH connection to bastion {} is gone{}",
                link.destination,
                ssh_said(&std::fs::read_to_string(&link.log).unwrap_or_default(), 3)
                    .map(|said| format!(" (ssh: {said})"))
                    .unwrap_or_default()
            );
            return;
        }
    }
}

/// Parameters that cannot connect: the bastion's error instead of a forward.
fn failed_route(bastion: &str, params: ConnParams, failure: Failure) -> ConnParams {
    let mut routed = params.via(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
    routed.tunnel = Some(Tunnel(Arc::new(TunnelInner {
        bastion: bastion.to_string(),
        route: Err(failure),
    })));
    routed
}

/// A local forward 127.0.0.1:<free port> → target, retried on another port when the
/// chosen one was taken in between.
async fn open_forward(session: &Session, target: &Target) -> std::result::Result<u16, String> {
    let mut last = String::new();
    for _ in 0..FORWARD_ATTEMPTS {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map_err(|e| format!("finding a free local port: {e}"))?
            .port();
        match session
            .request_port_forward(
                ForwardType::Local,
                (Ipv4Addr::LOCALHOST, port),
                target.socket(),
            )
            .await
        {
            Ok(()) => return Ok(port),
            Err(error) => last = error_chain(&error),
        }
    }
    Err(format!(
        "cannot open a local forward to {} (tried {FORWARD_ATTEMPTS} ports): {last}",
        target.label()
    ))
}

/// ssh's options for our masters, before the user's own config and the system's (the
/// first value found wins, and the command line before all). DEBUG1 puts the bastion's
/// host key fingerprint into the log (for the "unknown host key" message) and the
/// forward of each channel (to tell which server the bastion could not reach).
const SSH_CONFIG: &str = "\
# Written by odoo-db for one run, removed at its end.
LogLevel DEBUG1
ClearAllForwardings yes
ForwardAgent no
ForwardX11 no
PermitLocalCommand no
ServerAliveCountMax 3
Include ~/.ssh/config
Include /etc/ssh/ssh_config
";

// ---------------------------------------------------------------------------------------
// Forwards as the connections see them.

/// The SSH forward a server's connection parameters go through (in `ConnParams`): it
/// names the bastion in messages and explains failed attempts; or, when the bastion
/// could not be reached, the error every attempt fails with.
#[derive(Clone)]
pub struct Tunnel(Arc<TunnelInner>);

struct TunnelInner {
    bastion: String,
    route: std::result::Result<OpenRoute, Failure>,
}

struct OpenRoute {
    master: Arc<MasterLink>,
    local_port: u16,
    target: Target,
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Tunnel");
        debug.field("bastion", &self.0.bastion);
        match &self.0.route {
            Ok(open) => debug
                .field("local_port", &open.local_port)
                .field("target", &open.target.label()),
            Err(failure) => debug.field("failed", &failure.message),
        };
        debug.finish()
    }
}

impl Tunnel {
    /// The bastion, `ssh://user@host:port`.
    pub fn bastion(&self) -> &str {
        &self.0.bastion
    }

    /// The local end of the forward (on 127.0.0.1); None when the bastion failed.
    pub fn local_port(&self) -> Option<u16> {
        self.0.route.as_ref().ok().map(|open| open.local_port)
    }

    /// The error every attempt fails with when the bastion could not be reached.
    pub fn setup_error(&self) -> Option<Error> {
        self.0.route.as_ref().err().map(Failure::to_error)
    }

    /// Why an attempt through this forward failed, when the SSH side is to blame: the
    /// bastion could not be reached, the master is gone, or the bastion could not open a
    /// connection to the server (its "open failed" in the master's log). None when the
    /// bastion reached the server: the attempt's own error (authentication, TLS,
    /// timeout) then stands.
    pub async fn diagnose(&self) -> Option<Error> {
        let open = match &self.0.route {
            Ok(open) => open,
            Err(failure) => return Some(failure.to_error()),
        };
        let master = &open.master;
        let alive = master.check().await;
        let log = tokio::fs::read_to_string(&master.log)
            .await
            .unwrap_or_default();
        if !alive {
            return Some(Error::failed(format!(
                "the SSH connection to bastion {} is gone{}",
                master.destination,
                ssh_said(&log, 3)
                    .map(|said| format!(" (ssh: {said})"))
                    .unwrap_or_default()
            )));
        }
        channel_failure(&log, open.local_port).map(|reason| {
            Error::failed(format!(
                "bastion {} cannot reach the database server {}: {reason}",
                master.destination,
                open.target.label()
            ))
        })
    }
}

/// The outcome of the newest channel opened through local port `port`, from a master's
/// DEBUG1 log: `Some(reason)` when the bastion reported that it could not open it.
///
/// ```text
/// debug1: Connection to port 40123 forwarding to db1 port 5432 requested.
/// debug1: channel 3: new direct-tcpip [direct-tcpip] (inactive timeout: 0)
/// channel 3: open failed: connect failed: Connection refused
/// debug1: channel 3: free: direct-tcpip: listening port 40123 for db1 port 5432, …
/// ```
fn channel_failure(log: &str, port: u16) -> Option<String> {
    let mut pending: Option<u16> = None;
    let mut channel_port: HashMap<u32, u16> = HashMap::new();
    let mut newest: Option<Option<String>> = None;
    for line in log.lines() {
        let line = line.trim();
        let line = line.strip_prefix("debug1: ").unwrap_or(line);
        if let Some(rest) = line.strip_prefix("Connection to port ") {
            pending = rest.split_whitespace().next().and_then(|p| p.parse().ok());
            continue;
        }
        let Some(rest) = line.strip_prefix("channel ") else {
            continue;
        };
        let Some((number, event)) = rest.split_once(": ") else {
            continue;
        };
        let Ok(number) = number.parse::<u32>() else {
            continue;
        };
        if event.starts_with("new direct-tcpip") || event.starts_with("new [direct-tcpip]") {
            if let Some(listening) = pending.take() {
                channel_port.insert(number, listening);
                if listening == port {
                    newest = Some(None);
                }
            }
        } else if let Some(reason) = event.strip_prefix("open failed: ") {
            if channel_port.get(&number) == Some(&port) {
                newest = Some(Some(reason.trim().to_string()));
            }
        } else if event.starts_with("free: ") {
            channel_port.remove(&number);
        }
    }
    newest.flatten()
}

/// The last `count` lines ssh wrote that are not debug output, joined.
fn ssh_said(log: &str, count: usize) -> Option<String> {
    let said: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with("debug"))
        .map(|line| line.strip_prefix("ssh: ").unwrap_or(line))
        .filter(|line| !line.starts_with("Transferred:") && !line.starts_with("Bytes per second"))
        .collect();
    let tail = &said[said.len().saturating_sub(count)..];
    (!tail.is_empty()).then(|| tail.join("; "))
}

/// An openssh error with its sources (the crate puts ssh's own words one level down).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

/// What went wrong starting the master, in words that say what to do.
fn describe_launch_failure(spec: &BastionSpec, error: &openssh::Error) -> String {
    use std::error::Error as _;
    let log = match (error, error.source()) {
        (openssh::Error::Connect(_), Some(source)) => source.to_string(),
        _ => String::new(),
    };
    if let Some(io) = error
        .source()
        .and_then(|s| s.downcast_ref::<std::io::Error>())
    {
        if io.kind() == std::io::ErrorKind::NotFound && !log.contains("debug1:") {
            return format!("cannot run ssh: {io} (install the OpenSSH client)");
        }
    }
    if log.is_empty() {
        return format!("ssh failed: {}", error_chain(error));
    }
    describe_ssh_log(spec, &log)
}

/// Classify the log of a failed `ssh -M` by what the user must do.
fn describe_ssh_log(spec: &BastionSpec, log: &str) -> String {
    let said = ssh_said(log, 6).unwrap_or_else(|| "no message".to_string());
    let fingerprint = log
        .lines()
        .find_map(|line| line.trim().strip_prefix("debug1: Server host key: "))
        .map(str::trim);
    let (user, host, port) = spec.parts();
    let known_hosts = spec.known_hosts_label();
    let keyscan = if port == 22 {
        format!("ssh-keyscan {host}")
    } else {
        format!("ssh-keyscan -p {port} {host}")
    };
    if said.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || said.contains("has changed and you have requested strict checking")
    {
        return format!(
            "host key changed: the bastion presented {} which does not match its line in {known_hosts}; refused. \
             If the bastion was really re-keyed, replace that line; otherwise someone may be \
             intercepting the connection",
            fingerprint.unwrap_or("a different key")
        );
    }
    if said.contains("host key is known for") || said.contains("Host key verification failed") {
        return format!(
            "host key unknown: the bastion presented {} which is not in {known_hosts}; refused \
             (strict host key checking). If that is the bastion's key (compare with \
             `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on it), add it: `{keyscan} >> {known_hosts}`",
            fingerprint.unwrap_or("a key")
        );
    }
    if said.contains("Permission denied") {
        let key = match &spec.identity {
            Some(identity) => format!("the key {}", identity.display()),
            None => "none of ssh's keys (ssh-agent, ~/.ssh/id_*)".to_string(),
        };
        return format!(
            "authentication refused: {key} is not accepted for user {} on the bastion; add its \
             public key to that user's authorized_keys there, or set ssh_identity ({said})",
            user.unwrap_or("(default)")
        );
    }
    if said.contains("connect to host")
        || said.contains("Could not resolve hostname")
        || said.contains("timed out")
        || said.contains("Connection closed")
        || said.contains("Connection reset")
    {
        return format!("cannot connect to the bastion: {said}");
    }
    format!("ssh failed: {said}")
}

// ---------------------------------------------------------------------------------------
// Control directories and processes.

/// Where the per-run directories go: `ssh_control_dir`, else systemd's
/// `$RUNTIME_DIRECTORY`, else `$XDG_RUNTIME_DIR`, else `/tmp` (each run directory is a
/// fresh 0700 directory of its own).
fn control_base(spec: &BastionSpec) -> Result<PathBuf> {
    if let Some(dir) = &spec.control_dir {
        if !dir.is_dir() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    Error::failed(format!("creating ssh_control_dir {}: {e}", dir.display()))
                })?;
        }
        return Ok(dir.clone());
    }
    let from_env = |name: &str| {
        std::env::var_os(name)
            .filter(|value| !value.is_empty())
            .map(|value| {
                // systemd joins several RuntimeDirectory= paths with ':'.
                let first = value
                    .as_bytes()
                    .split(|b| *b == b':')
                    .next()
                    .unwrap_or_default();
                PathBuf::from(OsStr::from_bytes(first))
            })
            .filter(|path| path.is_dir())
    };
    Ok(from_env("RUNTIME_DIRECTORY")
        .or_else(|| from_env("XDG_RUNTIME_DIR"))
        .unwrap_or_else(std::env::temp_dir))
}

fn create_run_dir(base: &Path) -> Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("{RUN_DIR_PREFIX}{}-", std::process::id()))
        .rand_bytes(6)
        .tempdir_in(base)
        .map_err(|e| {
            Error::failed(format!(
                "creating a control directory in {}: {e} (set ssh_control_dir to a writable directory)",
                base.display()
            ))
        })?
        .keep();
    if dir.as_os_str().len() + CONTROL_SOCKET_SUFFIX > MAX_SOCKET_PATH {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(Error::refused(format!(
            "the control directory {} is too long for ssh's Unix socket paths ({} bytes at \
             most): set ssh_control_dir to a shorter directory",
            base.display(),
            MAX_SOCKET_PATH
                - CONTROL_SOCKET_SUFFIX
                - (dir.as_os_str().len() - base.as_os_str().len())
        )));
    }
    LIVE_RUN_DIRS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(dir.clone());
    Ok(dir)
}

/// Releases a run directory when dropped, unless disarmed (the master took it over).
struct RunDirGuard(Option<PathBuf>);

impl RunDirGuard {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RunDirGuard {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            release_run_dir(&dir);
        }
    }
}

/// Stop every process that still uses a run directory, remove it, forget it.
fn release_run_dir(dir: &Path) {
    let started = Instant::now();
    terminate_processes_using(dir);
    tracing::debug!(
        "SSH processes of {} ended in {} ms",
        dir.display(),
        started.elapsed().as_millis()
    );
    let _ = std::fs::remove_dir_all(dir);
    LIVE_RUN_DIRS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|live| live != dir);
}

/// Run directories of runs that died without cleaning up (SIGKILL, a crash): their
/// masters have exited by themselves or do now; the directories go.
fn remove_stale_run_dirs(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    let me = nix::unistd::geteuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(RUN_DIR_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        let owned = entry
            .metadata()
            .map(|m| m.is_dir() && m.uid() == me)
            .unwrap_or(false);
        if !owned || pid == std::process::id() as i32 || process_alive(pid) {
            continue;
        }
        let path = entry.path();
        tracing::debug!(
            "removing {}, left by a run that did not finish",
            path.display()
        );
        terminate_processes_using(&path);
        let _ = std::fs::remove_dir_all(&path);
    }
}

fn process_alive(pid: i32) -> bool {
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::errno::Errno::ESRCH) => false,
        Err(_) => true,
    }
}

/// Our processes (same user, not us) with an argument inside `dir`: the ssh master and,
/// after a timed-out start, the ssh that never forked.
fn processes_using(dir: &Path) -> Vec<i32> {
    let me = nix::unistd::geteuid().as_raw();
    let own = std::process::id() as i32;
    let mut prefix = dir.as_os_str().as_bytes().to_vec();
    prefix.push(b'/');
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            if pid == own || entry.metadata().ok()?.uid() != me {
                return None;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg.starts_with(&prefix))
                .then_some(pid)
        })
        .collect()
}

/// SIGTERM (ssh then removes its socket and closes its forwards), SIGKILL after 1 s.
fn terminate_processes_using(dir: &Path) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pids = processes_using(dir);
    if pids.is_empty() {
        return;
    }
    for pid in &pids {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let left: Vec<i32> = pids
            .iter()
            .copied()
            .filter(|p| process_alive(*p) && !is_zombie(*p))
            .collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for pid in left {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// An exited child not reaped yet (the ssh that forked, until tokio reaps it).
fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(content)
}

// ---------------------------------------------------------------------------------------
// Signals.

/// Run directories of the masters alive in this process.
static LIVE_RUN_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static SIGNAL_CLEANUP: AtomicBool = AtomicBool::new(false);

/// Called by the binary: on SIGINT, SIGTERM or SIGHUP, close the SSH masters of this run
/// before dying by that signal. (Libraries and tests keep the default dispositions.) The
/// handler is installed when the first master starts, so runs without a bastion keep
/// the default behaviour.
pub fn clean_up_on_signals() {
    SIGNAL_CLEANUP.store(true, Ordering::SeqCst);
}

fn signal_cleanup_wanted() -> bool {
    SIGNAL_CLEANUP.load(Ordering::SeqCst)
}

fn install_signal_cleanup() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::warn!(
                "cannot watch for signals: a Ctrl-C would leave the SSH master to exit by itself"
            );
            return;
        };
        tokio::spawn(async move {
            let number = tokio::select! {
                _ = interrupt.recv() => libc::SIGINT,
                _ = terminate.recv() => libc::SIGTERM,
                _ = hangup.recv() => libc::SIGHUP,
            };
            let dirs =
                std::mem::take(&mut *LIVE_RUN_DIRS.lock().unwrap_or_else(|e| e.into_inner()));
            for dir in dirs {
                release_run_dir(&dir);
            }
            // Die by the signal, as without the handler, so the caller sees it.
            // SAFETY: resetting a disposition to the default and raising are
            // async-signal-safe and we are not in a signal handler.
            unsafe {
                libc::signal(number, libc::SIG_DFL);
                libc::raise(number);
            }
            std::process::exit(128 + number);
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> BastionSpec {
        BastionSpec {
            destination: "ssh://admin@bastion.example:2222".to_string(),
            identity: Some(PathBuf::from("/etc/odoo-db/id_ed25519")),
            known_hosts: Some(PathBuf::from("/etc/odoo-db/known_hosts")),
            control_dir: None,
        }
    }

    #[test]
    fn destination_parts() {
        assert_eq!(spec().parts(), (Some("admin"), "bastion.example", 2222));
        let bare = BastionSpec {
            destination: "ssh://bastion".to_string(),
            ..spec()
        };
        assert_eq!(bare.parts(), (None, "bastion", 22));
    }

    #[test]
    fn targets_are_what_libpq_would_connect_to() {
        let p = ConnParams::parse("host=db1.example port=5433 user=u").unwrap();
        assert_eq!(Target::of(&p).label(), "db1.example:5433");
        let p = ConnParams::parse("host=db1.example hostaddr=10.0.0.5 user=u").unwrap();
        assert_eq!(Target::of(&p).label(), "10.0.0.5:5432");
        let p = ConnParams::parse("host=/var/run/postgresql port=5432 user=u").unwrap();
        assert_eq!(
            Target::of(&p),
            Target::Unix(PathBuf::from("/var/run/postgresql/.s.PGSQL.5432"))
        );
        let p = ConnParams::parse("host=::1 user=u").unwrap();
        assert_eq!(Target::of(&p).label(), "[::1]:5432");
    }

    const FORWARD_LOG: &str = "\
debug1: Connection to port 40001 forwarding to 127.0.0.1 port 5432 requested.
debug1: channel 1: new direct-tcpip [direct-tcpip] (inactive timeout: 0)
debug1: Connection to port 40002 forwarding to 127.0.0.1 port 1 requested.
debug1: channel 2: new direct-tcpip [direct-tcpip] (inactive timeout: 0)
debug1: Remote: /tmp/x/authorized_keys:1: key options: agent-forwarding port-forwarding
channel 2: open failed: connect failed: Connection refused
debug1: channel 2: free: direct-tcpip: listening port 40002 for 127.0.0.1 port 1, connect from 127.0.0.1 port 38908 to 127.0.0.1 port 40002, nchannels 4
debug1: channel 2: new mux-control [mux-control] (inactive timeout: 0)
";

    #[test]
    fn channel_failures_are_found_per_forward() {
        assert_eq!(
            channel_failure(FORWARD_LOG, 40002).as_deref(),
            Some("connect failed: Connection refused")
        );
        assert_eq!(channel_failure(FORWARD_LOG, 40001), None);
        assert_eq!(channel_failure(FORWARD_LOG, 40003), None);
        // A newer channel on the same forward that did not fail clears the verdict.
        let again = format!(
            "{FORWARD_LOG}debug1: Connection to port 40002 forwarding to 127.0.0.1 port 1 requested.\n\
             debug1: channel 2: new direct-tcpip [direct-tcpip] (inactive timeout: 0)\n"
        );
        assert_eq!(channel_failure(&again, 40002), None);
    }

    #[test]
    fn launch_failures_say_what_to_do() {
        let unknown = "debug1: Connecting to bastion.example [10.0.0.1] port 2222.\n\
            debug1: Server host key: ssh-ed25519 SHA256:51wSeGt+Q0o0wWw9c7vzXPRY45e+/YuYpTpuNnNgRbI\n\
            No ED25519 host key is known for [bastion.example]:2222 and you have requested strict checking.\n\
            Host key verification failed.";
        let text = describe_ssh_log(&spec(), unknown);
        assert!(text.starts_with("host key unknown"), "{text}");
        assert!(
            text.contains("ssh-ed25519 SHA256:51wSeGt+Q0o0wWw9c7vzXPRY45e+/YuYpTpuNnNgRbI"),
            "{text}"
        );
        assert!(
            text.contains("ssh-keyscan -p 2222 bastion.example >> /etc/odoo-db/known_hosts"),
            "{text}"
        );

        let denied = "debug1: Authenticating to bastion.example:2222 as 'admin'\n\
            admin@bastion.example: Permission denied (publickey).";
        let text = describe_ssh_log(&spec(), denied);
        assert!(text.starts_with("authentication refused"), "{text}");
        assert!(text.contains("/etc/odoo-db/id_ed25519"), "{text}");
        assert!(text.contains("user admin"), "{text}");

        let refused = "ssh: connect to host bastion.example port 2222: Connection refused";
        assert_eq!(
            describe_ssh_log(&spec(), refused),
            "cannot connect to the bastion: connect to host bastion.example port 2222: Connection refused"
        );
    }

    #[test]
    fn said_skips_debug_lines_and_statistics() {
        let log =
            "debug1: x\nchannel 2: open failed: y\nTransferred: sent 1\nBytes per second: 2\n";
        assert_eq!(
            ssh_said(log, 3).as_deref(),
            Some("channel 2: open failed: y")
        );
        assert_eq!(ssh_said("debug1: only\n", 3), None);
    }
}
