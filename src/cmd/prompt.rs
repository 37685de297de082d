//! The few lines of dialogue a destructive command has with its operator: the plan
//! printed before the question, and the question itself (the database's name typed on
//! a TTY, or `--yes`). Recreate and restore ask the same way, so they ask through here;
//! suspend and retire ask for the customer's name the same way.

use std::io::{IsTerminal, Write};

use crate::error::{Error, Result};

/// Print now (not at the end, as other results are): the plan must be on the screen
/// before the question and before anything happens.
pub(crate) fn say(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

/// The name typed on a TTY, or `--yes`; anything else changes nothing.
pub(crate) async fn confirm(name: &str, yes: bool, what: &str) -> Result<()> {
    confirm_typed(name, "database", yes, what).await
}

/// `expected`, the name of the `label` ("database", "customer"), typed on a TTY, or
/// `--yes`; anything else changes nothing.
pub(crate) async fn confirm_typed(
    expected: &str,
    label: &str,
    yes: bool,
    what: &str,
) -> Result<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::refused(format!(
            "{expected}: confirmation needed and there is no TTY to ask on (stdin is not a terminal): \
             pass --yes to {what} it; nothing was changed"
        )));
    }
    crate::print_error(&format!(
        "Type the {label} name ({expected}) to {what} it: "
    ));
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await
    .map_err(|error| Error::failed(format!("reading the confirmation: {error}")))??;
    let answer = answer.trim_end_matches(['\n', '\r']);
    if answer != expected {
        return Err(Error::refused(format!(
            "{expected}: the answer {answer:?} is not the {label}'s name, so it was not confirmed; nothing was changed"
        )));
    }
    Ok(())
}
