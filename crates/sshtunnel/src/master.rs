//! One OpenSSH master per bastion: started with strict host-key checking and a bound
//! on the whole login, kept alive while the run lives, its local forwards opened once,
//! and closed (with its control directory) however the run ends.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssh::{ControlPersist, ForwardType, KnownHosts, Session, SessionBuilder};
use pgconn::{Class, ConnParams, Error, Result};

use crate::bastion::{Bastion, Target};
use crate::bastions::Failure;
use crate::diagnosis::{describe_launch_failure, ssh_said};
use crate::rundir::{
    control_base, create_run_dir, install_signal_cleanup, release_run_dir, remove_stale_run_dirs,
    signal_cleanup_wanted, write_private, RunDirGuard,
};
use crate::tunnel::Tunnel;

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

/// What a forward needs to know about its master: enough to ping it and read its log,
/// without owning it.
#[derive(Debug)]
pub(crate) struct MasterLink {
    pub(crate) destination: String,
    control: PathBuf,
    pub(crate) log: PathBuf,
}

impl MasterLink {
    /// Whether the master still answers on its control socket.
    pub(crate) async fn check(&self) -> bool {
        let session = Session::resume_mux(self.control.clone().into_boxed_path(), None);
        matches!(
            tokio::time::timeout(Duration::from_secs(2), session.check()).await,
            Ok(Ok(()))
        )
    }
}

pub(crate) struct Master {
    link: Arc<MasterLink>,
    session: Option<Session>,
    /// Private per-run directory holding the control socket, the log and ssh's config.
    run_dir: PathBuf,
    forwards: BTreeMap<Target, std::result::Result<u16, String>>,
    keepalive: Option<tokio::task::JoinHandle<()>>,
}

impl Master {
    pub(crate) async fn start(
        spec: &Bastion,
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
        spec: &Bastion,
        targets: &BTreeSet<Target>,
        timeout: Duration,
        run_dir: &Path,
    ) -> Result<Master> {
        if signal_cleanup_wanted() {
            install_signal_cleanup();
        }
        // (No server URL of the cluster parsed: its jobs fail on that; keep a sane bound.)
        let timeout = timeout.max(Duration::from_secs(1));
        let builder = session_builder(spec, timeout, run_dir)?;
        let started = Instant::now();
        let session = connect_bounded(&builder, spec, timeout).await?;
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

    /// Whether the master still answers on its control socket.
    pub(crate) async fn answers(&self) -> bool {
        self.link.check().await
    }

    pub(crate) fn route(&self, params: ConnParams) -> ConnParams {
        let target = Target::of(&params);
        let bastion = &self.link.destination;
        match self.forwards.get(&target) {
            Some(Ok(port)) => {
                let tunnel = Tunnel::open(bastion, self.link.clone(), *port, target);
                params
                    .via(IpAddr::V4(Ipv4Addr::LOCALHOST), *port)
                    .through(Arc::new(tunnel))
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
    pub(crate) async fn close(mut self) {
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

/// The OpenSSH options of a master: strict host keys, its control socket in `run_dir`
/// (with odoo-db's own `ssh_config` there), a master that outlives odoo-db by
/// [`MASTER_IDLE`], keepalives, and the bastion's key and known hosts when configured.
fn session_builder(spec: &Bastion, timeout: Duration, run_dir: &Path) -> Result<SessionBuilder> {
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
    Ok(builder)
}

/// Opens the master, bounded as a whole by `timeout`.
async fn connect_bounded(
    builder: &SessionBuilder,
    spec: &Bastion,
    timeout: Duration,
) -> Result<Session> {
    // ConnectTimeout bounds TCP and the banner; this bounds key exchange and
    // authentication too (a bastion that accepts and then stalls).
    match tokio::time::timeout(timeout, builder.connect_mux(&spec.destination)).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(error)) => Err(Error::failed(describe_launch_failure(spec, &error))),
        Err(_elapsed) => Err(Error::failed(format!(
            "no SSH session within {}s (TCP, key exchange and authentication); is the \
             bastion up and reachable from here?",
            timeout.as_secs_f64()
        ))),
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
pub(crate) fn failed_route(bastion: &str, params: ConnParams, failure: Failure) -> ConnParams {
    params
        .via(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
        .through(Arc::new(Tunnel::failed(bastion, failure)))
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
            Err(error) => last = pgconn::describe_error_chain(&error),
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
