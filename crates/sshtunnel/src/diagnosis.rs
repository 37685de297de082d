//! What ssh's own log says, in words that say what to do: a host key unknown or
//! changed (with the `ssh-keyscan` line for known_hosts), a key refused, a bastion out
//! of reach, or a forward whose server the bastion could not reach.

use std::collections::HashMap;

use crate::bastion::Bastion;

/// The outcome of the newest channel opened through local port `port`, from a master's
/// DEBUG1 log: `Some(reason)` when the bastion reported that it could not open it.
///
/// ```text
/// debug1: Connection to port 40123 forwarding to db1 port 5432 requested.
/// debug1: channel 3: new direct-tcpip [direct-tcpip] (inactive timeout: 0)
/// channel 3: open failed: connect failed: Connection refused
/// debug1: channel 3: free: direct-tcpip: listening port 40123 for db1 port 5432, …
/// ```
pub(crate) fn channel_failure(log: &str, port: u16) -> Option<String> {
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
pub(crate) fn ssh_said(log: &str, count: usize) -> Option<String> {
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

/// What went wrong starting the master, in words that say what to do.
pub(crate) fn describe_launch_failure(spec: &Bastion, error: &openssh::Error) -> String {
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
        // The openssh crate puts ssh's own words one level down.
        return format!("ssh failed: {}", pgconn::describe_error_chain(error));
    }
    describe_ssh_log(spec, &log)
}

/// Classify the log of a failed `ssh -M` by what the user must do.
pub(crate) fn describe_ssh_log(spec: &Bastion, log: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bastion::tests::spec;

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
